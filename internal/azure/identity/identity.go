// Package identity gives each mount a token credential for its identity
// mode. Credentials that only prove who the caller is (VM managed identity,
// service principal) are long-lived and shared by every mount of the same
// principal, so tokens are cached across mounts instead of fetched per
// mount as upstream does; concurrent identical token requests are
// coalesced, and IMDS is kept under its limits.
//
// Where the token request is also an authorization decision that can be
// revoked, the cache may not answer for it. Pod identity: NMI decides on
// every mount (is this pod still bound?), so a pod-identity credential is
// made per mount and asks NMI every time; NMI caches tokens itself.
// Workload identity and identity binding: Entra ID or the AKS token proxy
// decides whether the service account may still use the identity, so a
// pod's first mount always exchanges its own service-account token, and a
// cached token serves only republishes of pods already authorized, within
// one rotation epoch (gate, in exchange.go).
//
// Credentials are keyed by everything that decides which principal they
// authenticate: the IMDS identity for VM managed identity, (authority,
// tenant, client, service account) for workload identity and identity
// binding, (authority, tenant, client, secret hash) for a service
// principal. Two mounts share a credential only when they would present
// the same proof of identity. The store is bounded (size and idle time), so
// service accounts and secrets seen once do not stay in memory, and so is
// the set of pods known to be authorized.
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
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"kvmount.dev/kvmount/internal/azure/config"
	"kvmount.dev/kvmount/internal/azure/identitybinding"
	"kvmount.dev/kvmount/internal/epoch"
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
	// Epochs are the rotation epochs (the node cache's): a workload
	// identity's or identity binding's cached token answers republishes
	// only within the epoch in which its principal last passed a fresh
	// exchange, and never for longer than MaxAuthWindow (see
	// authWindows). A zero period: every mount exchanges afresh.
	Epochs epoch.Clock
	// MaxAuthorized bounds the pods remembered as authorized (default
	// 65536); a pod forgotten exchanges afresh at its next republish.
	MaxAuthorized int
	Now           func() time.Time
}

// Source hands out credentials.
type Source struct {
	opts  Options
	creds *lru.Cache[string, *entry]
	// authorized holds credential key + pod UID of the pods that passed a
	// fresh exchange (workload identity, identity binding).
	authorized *lru.Cache[string, struct{}]
	imds       *http.Client
}

// entry is a principal's credential: cred (shared, cached tokens) or, for
// workload identity and identity binding, gate.
type entry struct {
	cred     azcore.TokenCredential
	gate     *gate
	endpoint string
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
	if opts.MaxAuthorized == 0 {
		opts.MaxAuthorized = 65536
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
	s := &Source{opts: opts, creds: lru.New[string, *entry](opts.MaxCredentials, opts.IdleTTL, opts.Now),
		authorized: lru.New[string, struct{}](opts.MaxAuthorized, opts.IdleTTL, opts.Now)}
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

// For returns the credential for cfg's identity, for a first mount.
func (s *Source) For(cfg config.Config) (Credential, error) {
	return s.ForMount(context.Background(), cfg, false)
}

// ForMount returns the credential for cfg's identity; republish says the
// mount is a rotation of a mounted volume, which a workload identity's or
// identity binding's cached token may serve if its pod was authorized.
func (s *Source) ForMount(ctx context.Context, cfg config.Config, republish bool) (Credential, error) {
	key, err := credentialKey(cfg)
	if err != nil {
		return Credential{}, err
	}
	if cfg.Mode == config.ModePodIdentity {
		nmi := &nmiCredential{endpoint: s.opts.NMIEndpoint, pod: cfg.Pod, client: s.opts.LocalHTTPClient}
		return Credential{TokenCredential: nmi, Key: key, Endpoint: s.opts.NMIEndpoint}, nil
	}
	// The token proxy is found (which may dial the API server) before the
	// store's lock is taken: other mounts never wait behind it.
	var proxy policy.Transporter
	if cfg.Mode == config.ModeIdentityBinding {
		if s.opts.TokenProxy == nil {
			return Credential{}, ErrNoTokenProxy
		}
		if proxy, err = s.opts.TokenProxy.Transport(ctx); err != nil {
			return Credential{}, err
		}
	}
	e, err := s.creds.GetOrAdd(key, func() (*entry, error) { return s.newEntry(cfg, proxy) })
	if err != nil {
		return Credential{}, err
	}
	if e.gate == nil {
		return Credential{TokenCredential: e.cred, Key: key, Endpoint: e.endpoint}, nil
	}
	pod := key + "|" + cfg.Pod.UID
	_, known := s.authorized.Get(pod)
	g := &gated{g: e.gate, assertion: cfg.ServiceAccountToken, cached: republish && known && cfg.Pod.UID != "",
		passed: func() { s.authorized.Put(pod, struct{}{}) }}
	return Credential{TokenCredential: g, Key: key, Endpoint: e.endpoint}, nil
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

func (s *Source) newEntry(cfg config.Config, proxy policy.Transporter) (*entry, error) {
	authority := strings.TrimSuffix(cfg.Cloud.AuthorityHost, "/") + "/" + cfg.TenantID
	switch cfg.Mode {
	case config.ModeVMManagedIdentity:
		cred := newIMDSCredential(s.imds, s.opts.IMDSEndpoint, cfg.UserAssignedIdentityID)
		return &entry{cred: coalesce(cred), endpoint: s.opts.IMDSEndpoint}, nil
	case config.ModeWorkloadIdentity:
		opts := &azidentity.ClientAssertionCredentialOptions{ClientOptions: s.clientOptions(cfg), DisableInstanceDiscovery: !knownAuthority(cfg)}
		return &entry{gate: s.newGate(cfg, opts), endpoint: authority}, nil
	case config.ModeIdentityBinding:
		// MSAL's instance discovery is off, as the proxy serves the
		// tenant's own endpoints only.
		opts := &azidentity.ClientAssertionCredentialOptions{ClientOptions: s.clientOptions(cfg), DisableInstanceDiscovery: true}
		opts.Transport = proxy
		return &entry{gate: s.newGate(cfg, opts), endpoint: "AKS token proxy " + s.opts.TokenProxy.Endpoint()}, nil
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

// newGate is a workload identity's (or, with the proxy's transport in
// opts, an identity binding's) gate: each fresh exchange is a new
// client-assertion credential holding one pod's service-account token, so
// no token cache of the SDK's can answer it.
func (s *Source) newGate(cfg config.Config, opts *azidentity.ClientAssertionCredentialOptions) *gate {
	tenant, client := cfg.TenantID, cfg.ClientID
	return newGate(authWindows(s.opts.Epochs), s.opts.Now, func(ctx context.Context, assertion string, tro policy.TokenRequestOptions) (azcore.AccessToken, error) {
		cred, err := azidentity.NewClientAssertionCredential(tenant, client, func(context.Context) (string, error) { return assertion, nil }, opts)
		if err != nil {
			return azcore.AccessToken{}, err
		}
		return cred.GetToken(ctx, tro)
	})
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

// MaxAuthWindow bounds how long a passed exchange answers republishes.
// With pushed refreshes (Key Vault's events) the poll can be hours, but a
// pod whose service account was removed from a binding or a federated
// credential must still stop receiving new versions within minutes: the
// 2-minute default poll's.
const MaxAuthWindow = 2 * time.Minute

// authWindows is the gate's clock: the rotation epochs, cut to at most
// MaxAuthWindow (with the node's phase, so nodes do not exchange in the
// same second).
func authWindows(c epoch.Clock) epoch.Clock {
	if c.Period <= MaxAuthWindow {
		return c
	}
	return epoch.Clock{Period: MaxAuthWindow, Phase: c.Phase % MaxAuthWindow}
}
