package provider_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azsim/keyvault"
	"kvmount.dev/kvmount/internal/azure/identity"
	"kvmount.dev/kvmount/internal/azure/provider"
)

func setSecret(t testing.TB, s *azsim.Server, name, value string) {
	t.Helper()
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: name, Value: value})
}

// TestFirstMountReadsKeyVault: "update the secret, then roll the
// deployment" works. A new pod's first mount reads Key Vault even while
// the node cache holds the previous version; the cache serves rotations
// within the epoch it was filled in; the next epoch's rotation reads again.
func TestFirstMountReadsKeyVault(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "v1")
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	grant(t, s, sp["appId"].(string))
	clock := newClock()
	e := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.Now = clock.now })
	p := e.baseParams("objectName: secret1\nobjectType: secret")
	content := func(resp *v1alpha1MountResponse, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return string(filesOf(resp)["secret1"].Contents)
	}
	old, err := e.mount(p, spCreds(sp))
	if got := content(old, err); got != "v1" {
		t.Fatalf("first pod got %q", got)
	}
	setSecret(t, s, "secret1", "v2")
	if got := content(e.republish(p, spCreds(sp), old)); got != "v1" {
		t.Fatalf("a rotation in the same epoch got %q, want the cached v1 (else the cache is not in use and this test proves nothing)", got)
	}
	p2 := e.baseParams("objectName: secret1\nobjectType: secret")
	p2["csi.storage.k8s.io/pod.name"], p2["csi.storage.k8s.io/pod.uid"] = "pod2", "uid-2"
	if got := content(e.mount(p2, spCreds(sp))); got != "v2" {
		t.Fatalf("a new pod got %q after the secret changed, want v2", got)
	}
	setSecret(t, s, "secret1", "v3")
	clock.advance(2 * time.Minute)
	if got := content(e.republish(p, spCreds(sp), old)); got != "v3" {
		t.Fatalf("the next epoch's rotation got %q, want v3", got)
	}
}

type v1alpha1MountResponse = v1alpha1.MountResponse

// TestSharedReadSurvivesOtherMounts: a read that several mounts joined
// runs on its own context. Mount A asks for {slow, missing} and mount B for
// {slow} of the same principal; A's missing object, and A giving up, never
// fail B.
func TestSharedReadSurvivesOtherMounts(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "x")
	setSecret(t, s, "slow", "slow-value")
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	grant(t, s, sp["appId"].(string))
	e := startProvider(t, s, cloudEnv, nil)
	// Warm the principal's token and the vault's challenge, so that A's
	// read of slow is in flight when B arrives.
	if _, err := e.mount(e.baseParams("objectName: secret1\nobjectType: secret"), spCreds(sp)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		aObjects []string
		aTimeout time.Duration
		aCode    codes.Code
	}{
		{"A's other object is missing", []string{"objectName: slow\nobjectType: secret", "objectName: missing\nobjectType: secret"}, 30 * time.Second, codes.NotFound},
		{"A gives up", []string{"objectName: slow\nobjectType: secret"}, 300 * time.Millisecond, codes.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			remove := s.KeyVault().Inject(keyvault.Fault{Vault: "kv1", Object: "slow", Delay: 1500 * time.Millisecond})
			defer remove()
			s.KeyVault().ResetStats()
			aErr := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), tt.aTimeout)
				defer cancel()
				pa := e.baseParams(tt.aObjects...)
				pa["csi.storage.k8s.io/pod.name"] = "pod-a"
				_, err := e.mountCtx(ctx, pa, spCreds(sp), nil)
				aErr <- err
			}()
			waitFor(t, func() bool { return s.KeyVault().Stats("kv1").Requests >= 1 }) // A's read arrived
			pb := e.baseParams("objectName: slow\nobjectType: secret")
			pb["csi.storage.k8s.io/pod.name"] = "pod-b"
			resp, err := e.mount(pb, spCreds(sp))
			if err != nil {
				t.Fatalf("B failed because of A: %v", err)
			}
			if string(filesOf(resp)["slow"].Contents) != "slow-value" {
				t.Fatal("B got the wrong content")
			}
			wantCode(t, <-aErr, tt.aCode)
			if n := readsOf(s, "slow"); n != 1 {
				t.Errorf("slow was read %d times; B should have joined A's read", n)
			}
		})
	}
}

// readsOf counts reads of one object through the fault hook's view: the
// vault's GET counter minus the other objects is not precise enough, so
// the tests use a fault with no effect as a counter.
func readsOf(s *azsim.Server, object string) int {
	return int(s.KeyVault().ObjectGets("kv1", object))
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPodIdentityAsksNMIEveryMount: NMI's answer is the binding decision.
// Once the pod's binding is gone, its next mount — and its rotation, even
// with the node cache full — is refused with the explanation, and never
// sees a version created after the unbinding.
func TestPodIdentityAsksNMIEveryMount(t *testing.T) {
	s, e, nmi := podIdentityEnv(t)
	p := e.baseParams("objectName: secret1\nobjectType: secret")
	p["usePodIdentity"] = "true"
	first, err := e.mount(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.republish(p, nil, first); err != nil {
		t.Fatal(err)
	}
	if n := nmi.calls.Load(); n != 2 {
		t.Errorf("NMI asked %d times for two mounts, want 2", n)
	}
	nmi.bound.Store(false) // kubectl label pod P aadpodidbinding-
	setSecret(t, s, "secret1", "after-unbinding")
	for _, call := range []func() error{
		func() error { _, err := e.republish(p, nil, first); return err },
		func() error { _, err := e.mount(p, nil); return err },
	} {
		wantCode(t, call(), codes.FailedPrecondition, "NMI found no identity for pod default/pod1", "aadpodidbinding")
	}
}

// podIdentityEnv is kv1 (secret1) readable by a user-assigned identity of
// the node's scale set, which an NMI for the pod hands out, and a provider
// that asks that NMI.
func podIdentityEnv(t testing.TB) (*azsim.Server, *env, *nmi) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "bound")
	ua := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "pod-id"})
	admin(t, s, "vmss create", arm.MachineArgs{ResourceGroup: "rg", Name: "pool", InstanceCount: 1})
	admin(t, s, "vmss identity assign", arm.AssignArgs{ResourceGroup: "rg", Name: "pool", Identities: []string{ua["id"].(string)}})
	grant(t, s, ua["clientId"].(string))
	imds, _ := s.IMDSURL("vmss/rg/pool/0")
	n := newNMI(t, imds, ua["clientId"].(string))
	e := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.NMIEndpoint = n.URL })
	return s, e, n
}

// nmi is aad-pod-identity's NMI for one identity: while bound, it takes
// the pod's token from the node's IMDS (and keeps it, as NMI does);
// unbound, it answers 404 as NMI does when no AzureIdentityBinding matches.
type nmi struct {
	*httptest.Server
	bound atomic.Bool
	calls atomic.Int64
	mu    sync.Mutex
	tok   []byte
}

func newNMI(t testing.TB, imds, clientID string) *nmi {
	n := &nmi{}
	n.bound.Store(true)
	n.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.calls.Add(1)
		if !n.bound.Load() {
			http.Error(w, "no AzureAssignedIdentity found for pod:default/pod1 in assigned state", http.StatusNotFound)
			return
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.tok == nil {
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, imds+"/metadata/identity/oauth2/token?api-version=2018-02-01&client_id="+clientID+"&resource="+r.URL.Query().Get("resource"), nil)
			req.Header.Set("Metadata", "true")
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				http.Error(w, fmt.Sprintf("IMDS: %v", err), http.StatusForbidden)
				return
			}
			defer resp.Body.Close()
			n.tok, _ = io.ReadAll(resp.Body)
		}
		fmt.Fprintf(w, `{"token":%s,"clientid":%q}`, n.tok, clientID)
	}))
	t.Cleanup(n.Close)
	return n
}

// TestThrottleSharedAcrossMounts: a 429's Retry-After is honoured by every
// mount of the vault at once, for longer than the SDK's retry cap when the
// deadline allows; past the deadline the mount fails at once, as
// ResourceExhausted, which the driver does not retry.
func TestThrottleSharedAcrossMounts(t *testing.T) {
	t.Parallel()
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "x")
	setSecret(t, s, "other", "y")
	a := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	b := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	grant(t, s, a["appId"].(string))
	grant(t, s, b["appId"].(string))
	e := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.MountTimeout = 40 * time.Second })
	for _, sp := range []map[string]any{a, b} { // tokens and challenges warm
		if _, err := e.mount(e.baseParams("objectName: other\nobjectType: secret"), spCreds(sp)); err != nil {
			t.Fatal(err)
		}
	}
	remove := s.KeyVault().Inject(keyvault.Fault{Vault: "kv1", Status: http.StatusTooManyRequests, RetryAfter: 16 * time.Second, Times: 1})
	defer remove()
	s.KeyVault().ResetStats()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, m := range []struct {
		sp  map[string]any
		obj string
	}{{a, "secret1"}, {b, "other"}} {
		wg.Go(func() {
			if i == 1 {
				waitFor(t, func() bool { return s.KeyVault().Stats("kv1").Throttled >= 1 })
			}
			_, errs[i] = e.mount(e.baseParams("objectName: "+m.obj+"\nobjectType: secret"), spCreds(m.sp))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("mount %d: %v", i, err)
		}
	}
	if took := time.Since(start); took < 15*time.Second {
		t.Errorf("mounts finished after %s, before the 16 s Retry-After", took.Round(time.Millisecond))
	}
	if st := s.KeyVault().Stats("kv1"); st.Requests != 3 {
		t.Errorf("%d requests reached the vault (1 throttled + 2 after the wait), want 3: a mount did not wait at the shared gate", st.Requests)
	}

	short := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.MountTimeout = 5 * time.Second })
	if _, err := short.mount(short.baseParams("objectName: other\nobjectType: secret"), spCreds(a)); err != nil {
		t.Fatal(err)
	}
	remove2 := s.KeyVault().Inject(keyvault.Fault{Vault: "kv1", Status: http.StatusTooManyRequests, RetryAfter: 30 * time.Second})
	defer remove2()
	start = time.Now()
	_, err := short.mount(short.baseParams("objectName: secret1\nobjectType: secret"), spCreds(a))
	wantCode(t, err, codes.ResourceExhausted, `key vault "kv1" is throttling`)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("a Retry-After past the deadline was waited for (%s)", took.Round(time.Millisecond))
	}
}

// TestIdentityEndpointUnavailable: an identity endpoint that is down,
// failing or hanging is reported as Unavailable (kubelet retries), naming
// the endpoint actually used, never the link-local default.
func TestIdentityEndpointUnavailable(t *testing.T) {
	t.Parallel()
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "x")
	refused := closedPort(t)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) }))
	defer failing.Close()
	hang := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer hanging.Close()
	defer close(hang)
	tests := []struct {
		name, imds string
		timeout    time.Duration
	}{
		{"refused", refused, 60 * time.Second},
		{"500", failing.URL, 60 * time.Second},
		{"hanging", hanging.URL, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.IMDSEndpoint = tt.imds; rc.MountTimeout = tt.timeout })
			p := e.baseParams("objectName: secret1\nobjectType: secret")
			// A client ID of its own: the SDK caches managed-identity
			// tokens process-wide, and a cached one would hide the endpoint.
			p["useVMManagedIdentity"], p["userAssignedIdentityID"] = "true", uuid.NewString()
			_, err := e.mount(p, nil)
			wantCode(t, err, codes.Unavailable, tt.imds)
			t.Log(err)
			if strings.Contains(err.Error(), strings.TrimPrefix(identity.DefaultIMDS, "http://")) {
				t.Errorf("error names the link-local default, not the endpoint used: %v", err)
			}
		})
	}
}

// TestEntraUnavailable: Entra ID answering 503 is Unavailable, naming the
// authority, not "Entra ID refused the token request".
func TestEntraUnavailable(t *testing.T) {
	t.Parallel()
	s, _ := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "x")
	down := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"temporarily_unavailable"}`, http.StatusServiceUnavailable)
	}))
	defer down.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "down.crt")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: down.Certificate().Raw}), 0o600)
	cloudEnv := filepath.Join(dir, "cloud.json")
	os.WriteFile(cloudEnv, []byte(`{"name":"AzureStackCloud","activeDirectoryEndpoint":"`+down.URL+`/","keyVaultEndpoint":"`+azsim.VaultResource+`/","keyVaultDNSSuffix":"`+azsim.VaultDNSSuffix+`"}`), 0o600)
	e := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.CAFiles = append(rc.CAFiles, ca) })
	_, err := e.mount(e.baseParams("objectName: secret1\nobjectType: secret"), map[string]string{"clientid": "00000000-0000-0000-0000-0000000000aa", "clientsecret": "s"})
	wantCode(t, err, codes.Unavailable, down.URL)
	t.Log(err)
}

// closedPort is a loopback URL nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// TestIMDSLimits: twenty mounts starting together for one identity ask IMDS
// once, and for twenty identities never more than five at a time.
func TestIMDSLimits(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "x")
	admin(t, s, "vmss create", arm.MachineArgs{ResourceGroup: "rg", Name: "pool", InstanceCount: 1})
	var ids []string
	for i := range 20 {
		ua := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: fmt.Sprintf("id%d", i)})
		admin(t, s, "vmss identity assign", arm.AssignArgs{ResourceGroup: "rg", Name: "pool", Identities: []string{ua["id"].(string)}})
		grant(t, s, ua["clientId"].(string))
		ids = append(ids, ua["clientId"].(string))
	}
	imds, _ := s.IMDSURL("vmss/rg/pool/0")
	counter := newCountingProxy(t, imds, 50*time.Millisecond)
	e := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.IMDSEndpoint = counter.URL })
	mountAll := func(idOf func(int) string) {
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				p := e.baseParams("objectName: secret1\nobjectType: secret")
				p["useVMManagedIdentity"], p["userAssignedIdentityID"] = "true", idOf(i)
				p["csi.storage.k8s.io/pod.name"] = fmt.Sprintf("pod-%d", i)
				if _, err := e.mount(p, nil); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	mountAll(func(int) string { return ids[0] })
	if n := counter.total.Load(); n != 1 {
		t.Errorf("20 mounts of one identity sent %d IMDS requests, want 1", n)
	}
	mountAll(func(i int) string { return ids[i] })
	if max := counter.max.Load(); max > 5 {
		t.Errorf("%d IMDS requests at once, IMDS allows 5", max)
	}
	if n := counter.total.Load(); n != 20 {
		t.Errorf("%d IMDS requests for 20 identities, want 20", n)
	}
}

// countingProxy forwards to IMDS after a delay, counting requests in
// flight.
type countingProxy struct {
	*httptest.Server
	total, inflight, max atomic.Int64
}

func newCountingProxy(t *testing.T, target string, delay time.Duration) *countingProxy {
	c := &countingProxy{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.total.Add(1)
		n := c.inflight.Add(1)
		defer c.inflight.Add(-1)
		for m := c.max.Load(); n > m && !c.max.CompareAndSwap(m, n); m = c.max.Load() {
		}
		time.Sleep(delay)
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), nil)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(c.Close)
	return c
}
