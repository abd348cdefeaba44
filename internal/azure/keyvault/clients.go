package keyvault

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
)

// clients are the SDK clients of one (vault, principal). They are shared
// by every mount of the principal, so that Key Vault's challenge and the
// principal's access token are fetched once, not per mount. Their
// credential is the calling mount's own (mountCredential): whenever the
// SDK needs a new token, it asks the identity of the mount at hand, never
// that of whichever mount created the clients.
type clients struct {
	secrets *azsecrets.Client
	keys    *azkeys.Client
	certs   *azcertificates.Client
}

type credentialKey struct{}

// withCredential makes cred the credential of every Key Vault request
// made with ctx.
func withCredential(ctx context.Context, cred azcore.TokenCredential) context.Context {
	return context.WithValue(ctx, credentialKey{}, cred)
}

var errNoCredential = errors.New("key vault request without a mount credential")

// mountCredential is the SDK clients' credential: the one the request's
// context carries.
type mountCredential struct{}

func (mountCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c, ok := ctx.Value(credentialKey{}).(azcore.TokenCredential)
	if !ok {
		return azcore.AccessToken{}, errNoCredential
	}
	return c.GetToken(ctx, opts)
}

// retryStatuses are the SDK's retried statuses without 429, which the
// throttle policy handles for every mount of the vault at once.
var retryStatuses = []int{408, 500, 502, 503, 504}

func (f *Fetcher) clientsFor(req Request) (*clients, error) {
	key := req.VaultURL + "|" + req.Principal.String()
	return f.clients.GetOrAdd(key, func() (*clients, error) { return f.newClients(req.VaultURL) })
}

func (f *Fetcher) newClients(vaultURL string) (*clients, error) {
	opts := azcore.ClientOptions{Transport: f.opts.HTTPClient}
	// Retries back off with jitter, bounded so that a mount ends well
	// inside kubelet's two-minute deadline.
	opts.Retry = policy.RetryOptions{MaxRetries: 4, RetryDelay: 400 * time.Millisecond, MaxRetryDelay: 15 * time.Second,
		TryTimeout: 20 * time.Second, StatusCodes: retryStatuses}
	opts.PerCallPolicies = []policy.Policy{&throttlePolicy{vault: vaultHost(vaultURL), g: f.gate(vaultURL), now: f.opts.Now}}
	opts.Telemetry.ApplicationID = f.opts.UserAgent
	cred := mountCredential{}
	s, err := azsecrets.NewClient(vaultURL, cred, &azsecrets.ClientOptions{ClientOptions: opts})
	if err != nil {
		return nil, err
	}
	k, err := azkeys.NewClient(vaultURL, cred, &azkeys.ClientOptions{ClientOptions: opts})
	if err != nil {
		return nil, err
	}
	c, err := azcertificates.NewClient(vaultURL, cred, &azcertificates.ClientOptions{ClientOptions: opts})
	if err != nil {
		return nil, err
	}
	return &clients{secrets: s, keys: k, certs: c}, nil
}

// gate is vaultURL's throttle state, shared by its clients.
func (f *Fetcher) gate(vaultURL string) *gate {
	g, _ := f.gates.GetOrAdd(vaultURL, func() (*gate, error) { return &gate{}, nil })
	return g
}

func vaultHost(vaultURL string) string {
	if u, err := url.Parse(vaultURL); err == nil && u.Host != "" {
		return strings.SplitN(u.Host, ".", 2)[0]
	}
	return vaultURL
}
