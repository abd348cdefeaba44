package identity

import (
	"context"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"kvmount.dev/kvmount/internal/flight"
)

// coalesced makes concurrent identical token requests of one credential
// one request: twenty pods of one identity starting together ask Entra ID
// or IMDS once. The request runs on a context of its own (package
// flight), so one mount giving up never fails the others.
type coalesced struct {
	cred  azcore.TokenCredential
	group flight.Group[azcore.AccessToken]
}

// tokenTimeout bounds one shared token request.
const tokenTimeout = 60 * time.Second

func coalesce(cred azcore.TokenCredential) azcore.TokenCredential {
	if cred == nil {
		return nil
	}
	return &coalesced{cred: cred, group: flight.Group[azcore.AccessToken]{Timeout: tokenTimeout}}
}

func (c *coalesced) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	key := strings.Join(opts.Scopes, " ") + "|" + opts.TenantID + "|" + opts.Claims
	return c.group.Do(ctx, key, func(ctx context.Context) (azcore.AccessToken, error) { return c.cred.GetToken(ctx, opts) })
}

// Remember returns cred answering requests for opts with tok while it is
// valid: the token a mount already obtained serves the rest of that mount.
func Remember(cred azcore.TokenCredential, opts policy.TokenRequestOptions, tok azcore.AccessToken) azcore.TokenCredential {
	return &remembered{cred: cred, opts: opts, tok: tok}
}

type remembered struct {
	cred azcore.TokenCredential
	opts policy.TokenRequestOptions
	tok  azcore.AccessToken
}

func (r *remembered) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	same := strings.Join(opts.Scopes, " ") == strings.Join(r.opts.Scopes, " ") && (opts.TenantID == "" || opts.TenantID == r.opts.TenantID) && opts.Claims == ""
	if same && time.Until(r.tok.ExpiresOn) > time.Minute {
		return r.tok, nil
	}
	return r.cred.GetToken(ctx, opts)
}
