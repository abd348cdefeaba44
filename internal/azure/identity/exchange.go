package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"kvmount.dev/kvmount/internal/epoch"
	"kvmount.dev/kvmount/internal/flight"
)

// gate makes the token of a workload identity or an identity binding an
// authorization check, as upstream's per-mount token request is: Entra ID
// (federated credential) or the AKS token proxy (binding) decides on every
// exchange whether the service account may still use the identity, and
// either can be revoked at any moment. So:
//
//   - a pod's first mount always presents its own service-account token in
//     a fresh exchange (identical concurrent exchanges, same token, are
//     coalesced); nothing cached answers it;
//   - a cached token answers only republishes (rotations) of pods that
//     passed such an exchange, and only within the rotation epoch in which
//     the principal last passed one; the first republish of each epoch
//     exchanges afresh with its pod's token, so a revoked service account
//     stops receiving new versions within one rotation poll (at most
//     MaxAuthWindow, as pushed refreshes let the poll be long);
//   - a failed exchange drops the cached token at once.
//
// The cost: one token request per new pod, and one per principal per poll
// on each node (measured in BenchmarkStorm110 and docs/capacity.md).
type gate struct {
	// fresh exchanges assertion for a token, bypassing every cache.
	fresh   func(ctx context.Context, assertion string, opts policy.TokenRequestOptions) (azcore.AccessToken, error)
	flights flight.Group[azcore.AccessToken]
	epochs  epoch.Clock
	now     func() time.Time

	mu     sync.Mutex // guards tokens
	tokens map[string]passed
}

// passed is a token from an exchange that passed, and its epoch.
type passed struct {
	tok   azcore.AccessToken
	epoch int64
}

func newGate(epochs epoch.Clock, now func() time.Time, fresh func(context.Context, string, policy.TokenRequestOptions) (azcore.AccessToken, error)) *gate {
	return &gate{fresh: fresh, epochs: epochs, now: now, tokens: map[string]passed{},
		flights: flight.Group[azcore.AccessToken]{Timeout: tokenTimeout}}
}

// token answers one mount: from the cache when cached is allowed (a
// republish of an authorized pod), else by a fresh exchange of assertion.
func (g *gate) token(ctx context.Context, assertion string, cached bool, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	key := strings.Join(opts.Scopes, " ") + "|" + opts.TenantID
	e := g.epochs.Of(g.now())
	if cached && g.epochs.Period > 0 {
		g.mu.Lock()
		p, ok := g.tokens[key]
		g.mu.Unlock()
		if ok && p.epoch == e && p.tok.ExpiresOn.Sub(g.now()) > 5*time.Minute {
			return p.tok, nil
		}
	}
	sum := sha256.Sum256([]byte(assertion))
	tok, err := g.flights.Do(ctx, key+"|"+hex.EncodeToString(sum[:]), func(ctx context.Context) (azcore.AccessToken, error) {
		return g.fresh(ctx, assertion, opts)
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		delete(g.tokens, key)
		return azcore.AccessToken{}, err
	}
	g.tokens[key] = passed{tok: tok, epoch: e}
	return tok, nil
}

// gated is one mount's credential of a gated principal.
type gated struct {
	g         *gate
	assertion string
	// cached: the mount is a republish of a pod that passed an exchange.
	cached bool
	// passed is called after an exchange (or a cached answer) succeeded.
	passed func()
}

// GetToken implements azcore.TokenCredential.
func (c *gated) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := c.g.token(ctx, c.assertion, c.cached, opts)
	if err == nil && c.passed != nil {
		c.passed()
	}
	return tok, err
}
