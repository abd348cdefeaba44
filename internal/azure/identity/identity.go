// Package identity gives each mount a token credential for its identity
// mode, long-lived and shared by every mount of the same principal, so that
// tokens (and, through the SDK clients built on them, Key Vault challenges)
// are cached across mounts instead of fetched per mount as upstream does.
//
// Credentials are keyed by everything that decides which principal they
// authenticate: a pod for pod identity, the IMDS identity for VM managed
// identity, (authority, tenant, client, service account) for workload
// identity, (authority, tenant, client, secret hash) for a service
// principal. Two mounts share a credential only when they would present the
// same proof of identity.
package identity

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"kvmount.dev/kvmount/internal/azure/config"
)

// Options configure where identities come from.
type Options struct {
	// NMIEndpoint is aad-pod-identity's NMI (default http://localhost:2579).
	NMIEndpoint string
	// IMDSEndpoint is the instance metadata service; requests the SDK
	// addresses to the link-local default are sent here instead.
	IMDSEndpoint string
	// HTTPClient carries Entra ID, NMI and IMDS traffic.
	HTTPClient *http.Client
	// IdleTTL drops credentials unused this long (default 1 h).
	IdleTTL time.Duration
	Now     func() time.Time
}

// Source hands out shared credentials.
type Source struct {
	opts Options

	mu    sync.Mutex // guards creds
	creds map[string]*entry
}

type entry struct {
	cred     azcore.TokenCredential
	lastUsed time.Time
	// assertion holds the newest service-account token of a workload
	// identity; the credential reads it whenever it needs a new token.
	assertion *assertion
}

// NewSource returns a Source with opts.
func NewSource(opts Options) *Source {
	if opts.NMIEndpoint == "" {
		opts.NMIEndpoint = "http://localhost:2579"
	}
	if opts.IdleTTL == 0 {
		opts.IdleTTL = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	return &Source{opts: opts, creds: map[string]*entry{}}
}

// Credential is a mount's credential and the key it is shared under.
type Credential struct {
	azcore.TokenCredential
	// Key identifies the credential; SDK clients are shared by key.
	Key string
}

// For returns the credential for cfg's identity, creating it once.
func (s *Source) For(cfg config.Config) (Credential, error) {
	key, err := credentialKey(cfg)
	if err != nil {
		return Credential{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep()
	e, ok := s.creds[key]
	if !ok {
		if e, err = s.newEntry(cfg); err != nil {
			return Credential{}, err
		}
		s.creds[key] = e
	}
	e.lastUsed = s.opts.Now()
	if e.assertion != nil {
		e.assertion.set(cfg.ServiceAccountToken)
	}
	return Credential{TokenCredential: e.cred, Key: key}, nil
}

// sweep drops idle credentials; s.mu is held.
func (s *Source) sweep() {
	now := s.opts.Now()
	for k, e := range s.creds {
		if now.Sub(e.lastUsed) > s.opts.IdleTTL {
			delete(s.creds, k)
		}
	}
}

// credentialKey names the principal a config authenticates as.
func credentialKey(cfg config.Config) (string, error) {
	auth := cfg.Cloud.AuthorityHost + "|" + cfg.TenantID
	switch cfg.Mode {
	case config.ModePodIdentity:
		return "pod|" + cfg.Pod.Namespace + "/" + cfg.Pod.Name + "|" + cfg.Pod.UID, nil
	case config.ModeVMManagedIdentity:
		return "imds|" + strings.ToLower(cfg.UserAssignedIdentityID), nil
	case config.ModeWorkloadIdentity:
		sub, err := tokenSubject(cfg.ServiceAccountToken)
		if err != nil {
			return "", err
		}
		return "wi|" + auth + "|" + cfg.ClientID + "|" + sub, nil
	case config.ModeServicePrincipal:
		sum := sha256.Sum256([]byte(cfg.SPClientSecret))
		return "sp|" + auth + "|" + cfg.SPClientID + "|" + hex.EncodeToString(sum[:8]), nil
	}
	return "", fmt.Errorf("identity mode %d: %w", cfg.Mode, errUnknownMode)
}

var errUnknownMode = fmt.Errorf("unknown identity mode")

func (s *Source) newEntry(cfg config.Config) (*entry, error) {
	switch cfg.Mode {
	case config.ModePodIdentity:
		return &entry{cred: &nmiCredential{endpoint: s.opts.NMIEndpoint, pod: cfg.Pod, client: s.opts.HTTPClient, now: s.opts.Now}}, nil
	case config.ModeVMManagedIdentity:
		return s.managedIdentity(cfg)
	case config.ModeWorkloadIdentity:
		a := &assertion{}
		a.set(cfg.ServiceAccountToken)
		opts := &azidentity.ClientAssertionCredentialOptions{ClientOptions: s.clientOptions(cfg), DisableInstanceDiscovery: !knownAuthority(cfg)}
		cred, err := azidentity.NewClientAssertionCredential(cfg.TenantID, cfg.ClientID, a.get, opts)
		return &entry{cred: cred, assertion: a}, err
	default:
		opts := &azidentity.ClientSecretCredentialOptions{ClientOptions: s.clientOptions(cfg), DisableInstanceDiscovery: !knownAuthority(cfg)}
		cred, err := azidentity.NewClientSecretCredential(cfg.TenantID, cfg.SPClientID, cfg.SPClientSecret, opts)
		return &entry{cred: cred}, err
	}
}

func (s *Source) managedIdentity(cfg config.Config) (*entry, error) {
	opts := &azidentity.ManagedIdentityCredentialOptions{}
	if id := cfg.UserAssignedIdentityID; id != "" {
		if strings.HasPrefix(strings.ToLower(id), "/subscriptions/") {
			opts.ID = azidentity.ResourceID(id)
		} else {
			opts.ID = azidentity.ClientID(id)
		}
	}
	opts.Transport = s.imdsClient()
	// IMDS answers identity errors with a 400 at once; the retries are for
	// its transient 404/410/429/5xx, kept well inside kubelet's deadline.
	opts.Retry = policy.RetryOptions{MaxRetries: 3, RetryDelay: time.Second, MaxRetryDelay: 8 * time.Second}
	cred, err := azidentity.NewManagedIdentityCredential(opts)
	return &entry{cred: cred}, err
}

func (s *Source) clientOptions(cfg config.Config) azcore.ClientOptions {
	o := azcore.ClientOptions{Transport: s.opts.HTTPClient}
	o.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: cfg.Cloud.AuthorityHost}
	o.Retry = policy.RetryOptions{MaxRetries: 3, RetryDelay: 500 * time.Millisecond, MaxRetryDelay: 10 * time.Second, TryTimeout: 30 * time.Second}
	return o
}

// knownAuthority reports whether the authority is a public Microsoft
// cloud's, where MSAL's instance discovery applies; for any other host it
// is switched off, as it would call login.microsoftonline.com to validate a
// host it cannot know.
func knownAuthority(cfg config.Config) bool {
	switch strings.TrimSuffix(strings.TrimPrefix(cfg.Cloud.AuthorityHost, "https://"), "/") {
	case "login.microsoftonline.com", "login.chinacloudapi.cn", "login.microsoftonline.us", "login.microsoftonline.de":
		return true
	}
	return false
}

// imdsDefaultHost is where the Azure SDK sends IMDS requests.
const imdsDefaultHost = "169.254.169.254"

// imdsClient sends the SDK's IMDS requests to Options.IMDSEndpoint, so that
// the endpoint is a flag and nothing is hard-wired to the link-local address.
func (s *Source) imdsClient() *http.Client {
	target, err := url.Parse(s.opts.IMDSEndpoint)
	if s.opts.IMDSEndpoint == "" || err != nil || target.Host == imdsDefaultHost {
		return s.opts.HTTPClient
	}
	base := s.opts.HTTPClient.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	return &http.Client{Transport: redirect{host: imdsDefaultHost, target: target, base: base}}
}

// redirect rewrites requests for host to target.
type redirect struct {
	host   string
	target *url.URL
	base   http.RoundTripper
}

func (r redirect) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Hostname() != r.host {
		return r.base.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host, req.Host = r.target.Scheme, r.target.Host, r.target.Host
	return r.base.RoundTrip(req)
}

// tokenSubject reads the sub claim of a service-account token without
// verifying it: the token comes from kubelet through the driver, and Entra
// ID verifies it; the subject only keeps credentials of different service
// accounts apart.
func tokenSubject(tok string) (string, error) {
	c, err := claimsOf(tok)
	if err != nil || c.Subject == "" {
		return "", fmt.Errorf("the service-account token for %s is not a JWT with a subject", config.WorkloadIdentityAudience)
	}
	return c.Subject, nil
}

type claims struct {
	Subject  string `json:"sub"`
	ObjectID string `json:"oid"`
	TenantID string `json:"tid"`
	AppID    string `json:"appid"`
	AZP      string `json:"azp"`
}

func claimsOf(tok string) (claims, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return claims{}, fmt.Errorf("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return claims{}, err
	}
	var c claims
	return c, json.Unmarshal(b, &c)
}

// Principal is who an access token says its holder is.
type Principal struct {
	TenantID, ObjectID, ClientID string
}

// String is the principal's cache key.
func (p Principal) String() string { return p.TenantID + "/" + p.ObjectID }

// PrincipalOf reads the principal of an access token (Entra tokens are
// JWTs with tid, oid and appid or azp). An opaque token yields the zero
// Principal and false.
func PrincipalOf(token string) (Principal, bool) {
	c, err := claimsOf(token)
	if err != nil || c.ObjectID == "" {
		return Principal{}, false
	}
	app := c.AppID
	if app == "" {
		app = c.AZP
	}
	return Principal{TenantID: c.TenantID, ObjectID: c.ObjectID, ClientID: app}, true
}

// assertion is a workload identity's current service-account token.
type assertion struct {
	mu  sync.Mutex
	tok string
}

func (a *assertion) set(t string) {
	a.mu.Lock()
	a.tok = t
	a.mu.Unlock()
}

func (a *assertion) get(context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tok, nil
}
