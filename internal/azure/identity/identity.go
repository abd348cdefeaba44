// Package identity gives each mount a token credential for its identity
// mode. Credentials that only prove who the caller is (VM managed identity,
// workload identity, service principal) are long-lived and shared by every
// mount of the same principal, so tokens are cached across mounts instead
// of fetched per mount as upstream does; concurrent identical token
// requests are coalesced, and IMDS is kept under its limits.
//
// Pod identity is different: NMI's answer is also an authorization
// decision (is this pod still bound to an identity?), which changes when a
// label or an AzureIdentityBinding does. So a pod-identity credential is
// made per mount and asks NMI every time; NMI itself caches tokens.
//
// Credentials are keyed by everything that decides which principal they
// authenticate: the IMDS identity for VM managed identity, (authority,
// tenant, client, service account) for workload identity and identity
// binding, (authority,
// tenant, client, secret hash) for a service principal. Two mounts share a
// credential only when they would present the same proof of identity. The
// store is bounded (size and idle time), so service accounts and secrets
// seen once do not stay in memory.
package identity

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"kvmount.dev/kvmount/internal/azure/config"
	"kvmount.dev/kvmount/internal/azure/identitybinding"
	"kvmount.dev/kvmount/internal/lru"
)

// Options configure where identities come from.
type Options struct {
	// NMIEndpoint is aad-pod-identity's NMI (default http://localhost:2579).
	NMIEndpoint string
	// IMDSEndpoint is the instance metadata service; requests the SDK
	// addresses to the link-local default are sent here instead.
	IMDSEndpoint string
	// HTTPClient carries Entra ID traffic; LocalHTTPClient the node-local
	// NMI and IMDS traffic, which never goes through a proxy (nil: the
	// same client).
	HTTPClient, LocalHTTPClient *http.Client
	// TokenProxy is AKS's token proxy, for identity binding; nil refuses
	// identity binding mounts.
	TokenProxy *identitybinding.Proxy
	// IdleTTL drops credentials unused this long (default 1 h).
	IdleTTL time.Duration
	// MaxCredentials bounds the credentials kept (default 4096).
	MaxCredentials int
	Now            func() time.Time
}

// Source hands out credentials.
type Source struct {
	opts  Options
	creds *lru.Cache[string, *entry]
	imds  *http.Client
}

type entry struct {
	cred azcore.TokenCredential
	// assertion holds the newest service-account token of a workload
	// identity; the credential reads it whenever it needs a new token.
	assertion *assertion
	endpoint  string
}

// DefaultIMDS is where the Azure SDK sends IMDS requests: the provider's
// --imds-endpoint default.
const DefaultIMDS = "http://169.254.169.254"

// NewSource returns a Source with opts.
func NewSource(opts Options) *Source {
	if opts.NMIEndpoint == "" {
		opts.NMIEndpoint = "http://localhost:2579"
	}
	if opts.IMDSEndpoint == "" {
		opts.IMDSEndpoint = DefaultIMDS
	}
	if opts.IdleTTL == 0 {
		opts.IdleTTL = time.Hour
	}
	if opts.MaxCredentials == 0 {
		opts.MaxCredentials = 4096
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.LocalHTTPClient == nil {
		opts.LocalHTTPClient = opts.HTTPClient
	}
	s := &Source{opts: opts, creds: lru.New[string, *entry](opts.MaxCredentials, opts.IdleTTL, opts.Now)}
	s.imds = newIMDSClient(opts.IMDSEndpoint, opts.LocalHTTPClient.Transport)
	return s
}

// Credential is a mount's credential and the key it is shared under.
type Credential struct {
	azcore.TokenCredential
	// Key identifies the credential.
	Key string
	// Endpoint is where its tokens come from (NMI, IMDS or the Entra
	// authority), for error messages.
	Endpoint string
}

// For returns the credential for cfg's identity.
func (s *Source) For(cfg config.Config) (Credential, error) {
	key, err := credentialKey(cfg)
	if err != nil {
		return Credential{}, err
	}
	if cfg.Mode == config.ModePodIdentity {
		nmi := &nmiCredential{endpoint: s.opts.NMIEndpoint, pod: cfg.Pod, client: s.opts.LocalHTTPClient}
		return Credential{TokenCredential: nmi, Key: key, Endpoint: s.opts.NMIEndpoint}, nil
	}
	e, err := s.creds.GetOrAdd(key, func() (*entry, error) { return s.newEntry(cfg) })
	if err != nil {
		return Credential{}, err
	}
	if e.assertion != nil {
		e.assertion.set(cfg.ServiceAccountToken)
	}
	return Credential{TokenCredential: e.cred, Key: key, Endpoint: e.endpoint}, nil
}

// Len is the number of credentials kept.
func (s *Source) Len() int { return s.creds.Len() }

// credentialKey names the principal a config authenticates as.
func credentialKey(cfg config.Config) (string, error) {
	auth := cfg.Cloud.AuthorityHost + "|" + cfg.TenantID
	switch cfg.Mode {
	case config.ModePodIdentity:
		return "pod|" + cfg.Pod.Namespace + "/" + cfg.Pod.Name + "|" + cfg.Pod.UID, nil
	case config.ModeVMManagedIdentity:
		return "imds|" + strings.ToLower(cfg.UserAssignedIdentityID), nil
	case config.ModeWorkloadIdentity, config.ModeIdentityBinding:
		sub, err := tokenSubject(cfg.ServiceAccountToken)
		if err != nil {
			return "", err
		}
		prefix := "wi|"
		if cfg.Mode == config.ModeIdentityBinding {
			prefix = "ib|"
		}
		return prefix + auth + "|" + cfg.ClientID + "|" + sub, nil
	case config.ModeServicePrincipal:
		sum := sha256.Sum256([]byte(cfg.SPClientSecret))
		return "sp|" + auth + "|" + cfg.SPClientID + "|" + hex.EncodeToString(sum[:8]), nil
	}
	return "", fmt.Errorf("identity mode %d: %w", cfg.Mode, errUnknownMode)
}

var errUnknownMode = fmt.Errorf("unknown identity mode")

func (s *Source) newEntry(cfg config.Config) (*entry, error) {
	authority := strings.TrimSuffix(cfg.Cloud.AuthorityHost, "/") + "/" + cfg.TenantID
	switch cfg.Mode {
	case config.ModeVMManagedIdentity:
		cred, err := s.managedIdentity(cfg)
		return &entry{cred: coalesce(cred), endpoint: s.opts.IMDSEndpoint}, err
	case config.ModeWorkloadIdentity:
		a := &assertion{}
		a.set(cfg.ServiceAccountToken)
		opts := &azidentity.ClientAssertionCredentialOptions{ClientOptions: s.clientOptions(cfg), DisableInstanceDiscovery: !knownAuthority(cfg)}
		cred, err := azidentity.NewClientAssertionCredential(cfg.TenantID, cfg.ClientID, a.get, opts)
		return &entry{cred: coalesce(cred), assertion: a, endpoint: authority}, err
	case config.ModeIdentityBinding:
		return s.identityBinding(cfg)
	case config.ModeServicePrincipal:
		opts := &azidentity.ClientSecretCredentialOptions{ClientOptions: s.clientOptions(cfg), DisableInstanceDiscovery: !knownAuthority(cfg)}
		cred, err := azidentity.NewClientSecretCredential(cfg.TenantID, cfg.SPClientID, cfg.SPClientSecret, opts)
		return &entry{cred: coalesce(cred), endpoint: authority}, err
	}
	return nil, fmt.Errorf("identity mode %d: %w", cfg.Mode, errUnknownMode)
}

// ErrNoTokenProxy is identity binding where the provider has no token
// proxy configured.
var ErrNoTokenProxy = errors.New("identity binding: this provider has no token proxy configured")

// identityBinding is workload identity's client-assertion credential with
// every Entra ID request sent to AKS's token proxy. MSAL's instance
// discovery is off, as the proxy serves the tenant's own endpoints only.
func (s *Source) identityBinding(cfg config.Config) (*entry, error) {
	if s.opts.TokenProxy == nil {
		return nil, ErrNoTokenProxy
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tr, err := s.opts.TokenProxy.Transport(ctx)
	if err != nil {
		return nil, err
	}
	a := &assertion{}
	a.set(cfg.ServiceAccountToken)
	opts := &azidentity.ClientAssertionCredentialOptions{ClientOptions: s.clientOptions(cfg), DisableInstanceDiscovery: true}
	opts.Transport = tr
	cred, err := azidentity.NewClientAssertionCredential(cfg.TenantID, cfg.ClientID, a.get, opts)
	return &entry{cred: coalesce(cred), assertion: a, endpoint: "AKS token proxy " + s.opts.TokenProxy.Endpoint()}, err
}

func (s *Source) managedIdentity(cfg config.Config) (azcore.TokenCredential, error) {
	opts := &azidentity.ManagedIdentityCredentialOptions{}
	if id := cfg.UserAssignedIdentityID; id != "" {
		if strings.HasPrefix(strings.ToLower(id), "/subscriptions/") {
			opts.ID = azidentity.ResourceID(id)
		} else {
			opts.ID = azidentity.ClientID(id)
		}
	}
	opts.Transport = s.imds
	// IMDS answers identity errors with a 400 at once; the retries are for
	// its transient 404/410/429/5xx, kept well inside kubelet's deadline,
	// and a hanging IMDS is given up on per try.
	opts.Retry = policy.RetryOptions{MaxRetries: 3, RetryDelay: time.Second, MaxRetryDelay: 8 * time.Second, TryTimeout: 10 * time.Second}
	return azidentity.NewManagedIdentityCredential(opts)
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
