package identity

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azsim/azsimtest"
	"kvmount.dev/kvmount/internal/azure/config"
	"kvmount.dev/kvmount/internal/azure/identitybinding"
	"kvmount.dev/kvmount/internal/epoch"
)

// counter counts the requests a credential really sends, by host and path.
type counter struct {
	base http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n[r.URL.Host+r.URL.Path]++
	c.mu.Unlock()
	return c.base.RoundTrip(r)
}

func (c *counter) count(hostPart string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	for h, n := range c.n {
		if strings.Contains(h, hostPart) {
			total += n
		}
	}
	return total
}

type fixture struct {
	sim    *azsim.Server
	http   *counter
	cloud  config.Cloud
	imds   string
	issuer *azsimtest.Issuer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	iss := azsimtest.NewIssuer(t)
	s, err := azsim.Start(context.Background(), azsim.Config{DataDir: t.TempDir(), TrustCAFiles: []string{iss.CAFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tr, err := azsim.NewTransport(s.Addr(), s.CAPath())
	if err != nil {
		t.Fatal(err)
	}
	mustAdmin(t, s, "vmss create", arm.MachineArgs{ResourceGroup: "rg", Name: "pool", InstanceCount: 1})
	imds, _ := s.IMDSURL("vmss/rg/pool/0")
	return &fixture{sim: s, http: &counter{base: tr, n: map[string]int{}}, imds: imds, issuer: iss,
		cloud: config.Cloud{Name: "AzureStackCloud", AuthorityHost: azsim.LoginURL + "/", KeyVaultResource: azsim.VaultResource, KeyVaultDNSSuffix: azsim.VaultDNSSuffix}}
}

func mustAdmin(t *testing.T, s *azsim.Server, verb string, args any) map[string]any {
	t.Helper()
	out, err := s.Admin(context.Background(), verb, args)
	if err != nil {
		t.Fatalf("azsim %s: %v", verb, err)
	}
	return out
}

func (f *fixture) source(opts Options) *Source {
	opts.HTTPClient = &http.Client{Transport: f.http}
	if opts.IMDSEndpoint == "" {
		opts.IMDSEndpoint = f.imds
	}
	return NewSource(opts)
}

func (f *fixture) token(t *testing.T, c Credential) {
	t.Helper()
	if _, err := c.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{azsim.VaultResource + "/.default"}}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) cfg(mode config.Mode) config.Config {
	return config.Config{Mode: mode, TenantID: f.sim.TenantID(), Cloud: f.cloud, Pod: config.Pod{Name: "p", Namespace: "ns", UID: "u1"}}
}

// TestVMManagedIdentity: one credential per IMDS identity (client ID case
// does not matter), its token cached, so a second mount sends nothing.
func TestVMManagedIdentity(t *testing.T) {
	f := newFixture(t)
	ua := mustAdmin(t, f.sim, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "a"})
	ub := mustAdmin(t, f.sim, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "b"})
	mustAdmin(t, f.sim, "vmss identity assign", arm.AssignArgs{ResourceGroup: "rg", Name: "pool", Identities: []string{ua["id"].(string), ub["id"].(string)}})
	src := f.source(Options{})
	user := f.cfg(config.ModeVMManagedIdentity)
	user.UserAssignedIdentityID = ua["clientId"].(string)
	upper := user
	upper.UserAssignedIdentityID = strings.ToUpper(user.UserAssignedIdentityID)
	system := f.cfg(config.ModeVMManagedIdentity)
	system.UserAssignedIdentityID = ub["id"].(string) // by resource ID

	c1, _ := src.For(user)
	c2, _ := src.For(upper)
	c3, _ := src.For(system)
	if c1.Key != c2.Key || c1.Key == c3.Key {
		t.Fatalf("keys %q %q %q: the same identity must share, another must not", c1.Key, c2.Key, c3.Key)
	}
	if c1.Endpoint != f.imds {
		t.Errorf("endpoint %q, want the configured IMDS %q", c1.Endpoint, f.imds)
	}
	f.token(t, c1)
	f.token(t, c2)
	if n := f.http.count("127.0.0.1"); n != 1 {
		t.Errorf("%d IMDS requests for two mounts of one identity, want 1", n)
	}
	f.token(t, c3)
	if n := f.http.count("127.0.0.1"); n != 2 {
		t.Errorf("another identity did not get its own token (%d requests)", n)
	}
}

// TestWorkloadIdentity: keyed by (authority, tenant, client, service
// account); every first mount exchanges its own service-account token (no
// cache answers it); a republish of an authorized pod within the epoch is
// answered by the cached token; another service account gets its own
// credential.
func TestWorkloadIdentity(t *testing.T) {
	f := newFixture(t)
	ua := mustAdmin(t, f.sim, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "wi"})
	for _, sa := range []string{"app", "other"} {
		mustAdmin(t, f.sim, "identity federated-credential create", arm.FederatedArgs{ResourceGroup: "rg", IdentityName: "wi", Name: sa,
			Issuer: f.issuer.URL, Subject: "system:serviceaccount:ns:" + sa})
	}
	now := time.Now()
	src := f.source(Options{Epochs: epoch.Clock{Period: 2 * time.Minute}, Now: func() time.Time { return now }})
	cfgFor := func(sa, uid string) config.Config {
		c := f.cfg(config.ModeWorkloadIdentity)
		c.ClientID, c.ServiceAccountToken, c.Pod.UID = ua["clientId"].(string), f.issuer.Token("ns", sa), uid
		return c
	}
	a1, _ := src.For(cfgFor("app", "pod-1"))
	a2, _ := src.For(cfgFor("app", "pod-2"))
	b, _ := src.For(cfgFor("other", "pod-3"))
	if a1.Key != a2.Key || a1.Key == b.Key {
		t.Fatalf("keys %q %q %q", a1.Key, a2.Key, b.Key)
	}
	if !strings.Contains(a1.Endpoint, f.sim.TenantID()) {
		t.Errorf("endpoint %q does not name the tenant's authority", a1.Endpoint)
	}
	f.token(t, a1)
	f.token(t, a2)
	f.token(t, b)
	if n := f.http.count("/oauth2/v2.0/token"); n != 3 {
		t.Errorf("%d Entra token requests for three first mounts, want 3 (each presents its own token)", n)
	}
	r1, _ := src.ForMount(context.Background(), cfgFor("app", "pod-1"), true)
	f.token(t, r1)
	if n := f.http.count("/oauth2/v2.0/token"); n != 3 {
		t.Errorf("a republish of an authorized pod in the same epoch sent a token request (%d)", n)
	}
	stranger, _ := src.ForMount(context.Background(), cfgFor("app", "pod-never-mounted"), true)
	f.token(t, stranger)
	if n := f.http.count("/oauth2/v2.0/token"); n != 4 {
		t.Errorf("a republish of a pod that never passed an exchange was answered from the cache (%d requests)", n)
	}
	if src.Len() != 2 {
		t.Errorf("%d credentials kept, want 2", src.Len())
	}
}

// TestRevocation: deleting the federated credential stops a workload
// identity at once for new pods and within one rotation epoch for running
// ones: a new pod's first mount is refused (no cached token answers it),
// and the refusal drops the cached token, so the running pod's next
// republish exchanges again and is refused too; without the refusal, the
// running pod's first republish of the next epoch exchanges afresh.
func TestRevocation(t *testing.T) {
	f := newFixture(t)
	ua := mustAdmin(t, f.sim, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "wi"})
	mustAdmin(t, f.sim, "identity federated-credential create", arm.FederatedArgs{ResourceGroup: "rg", IdentityName: "wi", Name: "fc",
		Issuer: f.issuer.URL, Subject: "system:serviceaccount:ns:app"})
	now := time.Now()
	src := f.source(Options{Epochs: epoch.Clock{Period: 2 * time.Minute}, Now: func() time.Time { return now }})
	cfgFor := func(uid string) config.Config {
		c := f.cfg(config.ModeWorkloadIdentity)
		c.ClientID, c.ServiceAccountToken, c.Pod.UID = ua["clientId"].(string), f.issuer.Token("ns", "app"), uid
		return c
	}
	get := func(uid string, republish bool) error {
		c, err := src.ForMount(context.Background(), cfgFor(uid), republish)
		if err != nil {
			return err
		}
		_, err = c.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{azsim.VaultResource + "/.default"}})
		return err
	}
	if err := get("running", false); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	before := f.http.count("/oauth2/v2.0/token")
	if err := get("running", true); err != nil || f.http.count("/oauth2/v2.0/token") != before+1 {
		t.Fatalf("the first republish of a new epoch: %v, %d requests; want a fresh exchange", err, f.http.count("/oauth2/v2.0/token")-before)
	}
	if err := get("running", true); err != nil || f.http.count("/oauth2/v2.0/token") != before+1 {
		t.Fatalf("a second republish in the epoch: %v; want the cached token", err)
	}
	mustAdmin(t, f.sim, "identity federated-credential delete", arm.FederatedArgs{ResourceGroup: "rg", IdentityName: "wi", Name: "fc"})
	if err := get("new-pod", false); err == nil {
		t.Fatal("a pod created after the federated credential was deleted got a token")
	}
	if err := get("running", true); err == nil {
		t.Fatal("after a refused exchange, the running pod's republish was still answered from the cache")
	}
	now = now.Add(2 * time.Minute)
	if err := get("running", true); err == nil {
		t.Fatal("the running pod got a token in the next epoch")
	}
}

// TestServicePrincipal: keyed by the secret's hash, so a rotated client
// secret is a new credential (and a fresh token request), and the secret
// itself is never part of the key.
func TestServicePrincipal(t *testing.T) {
	f := newFixture(t)
	sp := mustAdmin(t, f.sim, "ad sp create-for-rbac", arm.SPArgs{})
	src := f.source(Options{})
	c := f.cfg(config.ModeServicePrincipal)
	c.SPClientID, c.SPClientSecret = sp["appId"].(string), sp["password"].(string)
	a, _ := src.For(c)
	b, _ := src.For(c)
	f.token(t, a)
	f.token(t, b)
	if a.Key != b.Key || f.http.count("/oauth2/v2.0/token") != 1 {
		t.Errorf("same secret: keys %q %q, %d Entra requests, want one shared credential and 1", a.Key, b.Key, f.http.count("/oauth2/v2.0/token"))
	}
	if strings.Contains(a.Key, c.SPClientSecret) {
		t.Fatal("the client secret is part of the key")
	}
	c.SPClientSecret = "rotated"
	d, _ := src.For(c)
	if d.Key == a.Key {
		t.Fatal("a different secret shares the credential of the old one")
	}
}

// TestPodIdentity: never cached, never kept: NMI is asked on every token
// request, because its answer is the binding decision.
func TestPodIdentity(t *testing.T) {
	var calls atomic.Int64
	nmi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("podname") != "p" || r.Header.Get("podns") != "ns" {
			http.Error(w, "missing headers", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, `{"token":{"access_token":"tok","expires_on":"%d"},"clientid":"c"}`, time.Now().Add(time.Hour).Unix())
	}))
	defer nmi.Close()
	src := NewSource(Options{NMIEndpoint: nmi.URL})
	for range 3 {
		c, err := src.For(config.Config{Mode: config.ModePodIdentity, Pod: config.Pod{Name: "p", Namespace: "ns", UID: "u"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}}); err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 3 {
		t.Errorf("NMI asked %d times for 3 mounts, want 3", calls.Load())
	}
	if src.Len() != 0 {
		t.Errorf("%d pod-identity credentials kept, want 0", src.Len())
	}
}

// TestCoalescedTokens: twenty concurrent first requests of one identity
// are one request to IMDS (whose limit is 5 at once).
func TestCoalescedTokens(t *testing.T) {
	f := newFixture(t)
	ua := mustAdmin(t, f.sim, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "a"})
	mustAdmin(t, f.sim, "vmss identity assign", arm.AssignArgs{ResourceGroup: "rg", Name: "pool", Identities: []string{ua["id"].(string)}})
	f.http.base = slow{f.http.base, 100 * time.Millisecond}
	src := f.source(Options{})
	c := f.cfg(config.ModeVMManagedIdentity)
	c.UserAssignedIdentityID = ua["clientId"].(string)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			cred, _ := src.For(c)
			f.token(t, cred)
		})
	}
	wg.Wait()
	if n := f.http.count("/metadata/identity"); n != 1 {
		t.Errorf("%d IMDS requests for 20 concurrent mounts, want 1", n)
	}
}

type slow struct {
	base  http.RoundTripper
	delay time.Duration
}

func (s slow) RoundTrip(r *http.Request) (*http.Response, error) {
	time.Sleep(s.delay)
	return s.base.RoundTrip(r)
}

// TestBounded: credentials leave when idle or when the store is full, so
// ten thousand service accounts seen over time never stay in memory.
func TestBounded(t *testing.T) {
	now := time.Unix(2_000_000_000, 0)
	src := NewSource(Options{MaxCredentials: 100, IdleTTL: time.Hour, Now: func() time.Time { return now }})
	cloud := config.Cloud{AuthorityHost: "https://login.example/"}
	for i := range 10000 {
		c := config.Config{Mode: config.ModeWorkloadIdentity, TenantID: "t", ClientID: "c", Cloud: cloud,
			ServiceAccountToken: jwt(fmt.Sprintf("system:serviceaccount:ns:sa-%d", i))}
		if _, err := src.For(c); err != nil {
			t.Fatal(err)
		}
	}
	if src.Len() != 100 {
		t.Errorf("%d credentials after 10,000 service accounts, want the bound 100", src.Len())
	}
	now = now.Add(2 * time.Hour)
	if src.Len() != 0 {
		t.Errorf("%d credentials after two idle hours, want 0", src.Len())
	}
}

func jwt(sub string) string {
	enc := func(s string) string { return strings.TrimRight(b64(s), "=") }
	return enc(`{"alg":"none"}`) + "." + enc(`{"sub":"`+sub+`"}`) + ".x"
}

func b64(s string) string { return base64.URLEncoding.EncodeToString([]byte(s)) }

// TestDiscoveryOutsideTheStore: while identity binding's proxy discovery
// hangs (an API server that accepts but never answers), a service
// principal's mount gets its credential: discovery holds no lock of the
// credential store.
func TestDiscoveryOutsideTheStore(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- c // held open, never answered
		}
	}()
	ca := azsimtest.NewIssuer(t) // any CA will do: discovery never gets to verify
	caPEM, _ := os.ReadFile(ca.CAFile)
	proxy := identitybinding.New(identitybinding.Config{APIServer: "https://" + l.Addr().String(), CAData: caPEM})
	src := NewSource(Options{TokenProxy: proxy})
	cloud := config.Cloud{AuthorityHost: "https://login.example/"}
	ib := config.Config{Mode: config.ModeIdentityBinding, TenantID: "t", ClientID: "c", Cloud: cloud, ServiceAccountToken: jwt("system:serviceaccount:ns:a")}
	ibDone := make(chan error, 1)
	go func() {
		_, err := src.ForMount(context.Background(), ib, false)
		ibDone <- err
	}()
	var conn net.Conn
	select {
	case conn = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("discovery never dialled the API server")
	}
	spDone := make(chan error, 1)
	go func() {
		_, err := src.For(config.Config{Mode: config.ModeServicePrincipal, TenantID: "t", SPClientID: "c", SPClientSecret: "s", Cloud: cloud})
		spDone <- err
	}()
	select {
	case err := <-spDone:
		if err != nil {
			t.Fatal(err)
		}
	case err := <-ibDone:
		t.Fatalf("the service principal waited for identity binding's discovery to end (%v)", err)
	}
	conn.Close()
	if err := <-ibDone; err == nil {
		t.Error("discovery against a server that never answered succeeded")
	}
}

// TestManagedIdentityCacheIsTheCredentials: a VM managed identity's tokens
// are cached in its credential, which the store bounds, not in a
// process-wide cache: another source asks IMDS itself, and once the
// identity's credential left the store, its token is gone with it.
func TestManagedIdentityCacheIsTheCredentials(t *testing.T) {
	f := newFixture(t)
	ua := mustAdmin(t, f.sim, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "a"})
	mustAdmin(t, f.sim, "vmss identity assign", arm.AssignArgs{ResourceGroup: "rg", Name: "pool", Identities: []string{ua["id"].(string)}})
	now := time.Now()
	clock := func() time.Time { return now }
	c := f.cfg(config.ModeVMManagedIdentity)
	c.UserAssignedIdentityID = ua["clientId"].(string)
	one := f.source(Options{IdleTTL: time.Hour, Now: clock})
	for _, src := range []*Source{one, one, f.source(Options{Now: clock})} {
		cred, err := src.For(c)
		if err != nil {
			t.Fatal(err)
		}
		f.token(t, cred)
	}
	if n := f.http.count("/metadata/identity"); n != 2 {
		t.Fatalf("%d IMDS requests for two sources (one asked twice), want 2", n)
	}
	now = now.Add(2 * time.Hour)
	if one.Len() != 0 {
		t.Fatalf("%d credentials after two idle hours, want 0", one.Len())
	}
	cred, _ := one.For(c)
	f.token(t, cred)
	if n := f.http.count("/metadata/identity"); n != 3 {
		t.Errorf("%d IMDS requests: the forgotten identity's token was still cached somewhere", n)
	}
}

// FuzzIMDSAnswer: any IMDS body gives a token with an expiry or an error,
// never a panic; error descriptions stay short.
func FuzzIMDSAnswer(f *testing.F) {
	f.Add([]byte(`{"access_token":"t","expires_on":"1700000000","expires_in":"3599"}`))
	f.Add([]byte(`{"access_token":"t","expires_in":"10"}`))
	f.Add([]byte(`{"error":"invalid_request","error_description":"Identity not found"}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := parseIMDSToken(body)
		if err == nil && (tok.Token == "" || tok.ExpiresOn.IsZero()) {
			t.Errorf("token %+v without a value or an expiry", tok)
		}
		if d := imdsDescription(body); len(d) > 300 && !strings.Contains(string(body), "error_description") {
			t.Errorf("description of %d bytes", len(d))
		}
	})
}

// TestAuthorizedPodsBounded: the pods remembered as authorized are
// bounded; a pod forgotten exchanges afresh at its next republish.
func TestAuthorizedPodsBounded(t *testing.T) {
	f := newFixture(t)
	ua := mustAdmin(t, f.sim, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "wi"})
	mustAdmin(t, f.sim, "identity federated-credential create", arm.FederatedArgs{ResourceGroup: "rg", IdentityName: "wi", Name: "app",
		Issuer: f.issuer.URL, Subject: "system:serviceaccount:ns:app"})
	src := f.source(Options{MaxAuthorized: 10, Epochs: epoch.Clock{Period: time.Hour}})
	cfg := f.cfg(config.ModeWorkloadIdentity)
	cfg.ClientID, cfg.ServiceAccountToken = ua["clientId"].(string), f.issuer.Token("ns", "app")
	for i := range 30 {
		cfg.Pod.UID = fmt.Sprintf("pod-%d", i)
		c, err := src.ForMount(context.Background(), cfg, false)
		if err != nil {
			t.Fatal(err)
		}
		f.token(t, c)
	}
	if n := src.authorized.Len(); n != 10 {
		t.Fatalf("%d authorized pods remembered after 30, want the bound 10", n)
	}
	before := f.http.count("/oauth2/v2.0/token")
	cfg.Pod.UID = "pod-0" // forgotten: the oldest
	c, _ := src.ForMount(context.Background(), cfg, true)
	f.token(t, c)
	if f.http.count("/oauth2/v2.0/token") != before+1 {
		t.Error("a forgotten pod's republish was answered from the cache")
	}
}
