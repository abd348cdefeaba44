package entra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"kvmount.dev/kvmount/internal/azsim/jwt"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// jwksTTL is how long an external issuer's keys are trusted before they are
// fetched again.
const jwksTTL = 5 * time.Minute

// Federation verifies workload-identity assertions: tokens from an external
// OIDC issuer (a Kubernetes cluster's service-account issuer) that an app's
// federated credential trusts.
type Federation struct {
	// Client fetches issuers' discovery documents and keys; it must trust
	// their CAs.
	Client *http.Client
	Now    func() time.Time

	mu    sync.Mutex // guards cache
	cache map[string]cachedKeys
}

type cachedKeys struct {
	keys    jwt.JWKS
	fetched time.Time
}

// Check verifies assertion for app: a federated credential must match its
// issuer, subject and audience, and the issuer's published keys must verify
// its signature within its lifetime.
func (f *Federation) Check(ctx context.Context, app store.App, assertion string) error {
	p, err := jwt.Parse(assertion)
	if err != nil {
		return &oauthErr{http.StatusBadRequest, "invalid_client", 50027, "AADSTS50027: JWT token is invalid or malformed."}
	}
	c := p.Claims
	if !matchesCredential(app.Federated, c) {
		return &oauthErr{http.StatusBadRequest, "invalid_client", 70021, fmt.Sprintf(
			"AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: '%s'. Assertion Subject: '%s'. Assertion Audience: '%s'.",
			c.Issuer, c.Subject, strings.Join(c.Audiences, ","))}
	}
	keys, err := f.keys(ctx, c.Issuer)
	if err != nil {
		return &oauthErr{http.StatusBadRequest, "invalid_client", 50166, fmt.Sprintf(
			"AADSTS50166: Request to External OIDC endpoint failed: %v", err)}
	}
	pub, err := keys.Find(p.Kid)
	if err == nil {
		err = p.VerifySignature(pub)
	}
	if err != nil {
		return &oauthErr{http.StatusUnauthorized, "invalid_client", 50012, "AADSTS50012: Client assertion failed signature validation."}
	}
	if err := c.CheckTime(f.now(), time.Minute); err != nil {
		return &oauthErr{http.StatusBadRequest, "invalid_client", 700024, "AADSTS700024: Client assertion is not within its valid time range: " + err.Error()}
	}
	return nil
}

func matchesCredential(creds []store.FederatedCredential, c jwt.Claims) bool {
	for _, fc := range creds {
		if fc.Issuer != c.Issuer || fc.Subject != c.Subject {
			continue
		}
		for _, aud := range fc.Audiences {
			if c.Audiences.Has(aud) {
				return true
			}
		}
	}
	return false
}

func (f *Federation) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// keys returns the issuer's JWKS, from cache when fresh.
func (f *Federation) keys(ctx context.Context, issuer string) (jwt.JWKS, error) {
	f.mu.Lock()
	c, ok := f.cache[issuer]
	f.mu.Unlock()
	if ok && f.now().Sub(c.fetched) < jwksTTL {
		return c.keys, nil
	}
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := f.getJSON(ctx, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", &disc); err != nil {
		return jwt.JWKS{}, err
	}
	if disc.Issuer != issuer || disc.JWKSURI == "" {
		return jwt.JWKS{}, fmt.Errorf("discovery document of %s names issuer %q and jwks_uri %q", issuer, disc.Issuer, disc.JWKSURI)
	}
	var keys jwt.JWKS
	if err := f.getJSON(ctx, disc.JWKSURI, &keys); err != nil {
		return jwt.JWKS{}, err
	}
	f.mu.Lock()
	if f.cache == nil {
		f.cache = map[string]cachedKeys{}
	}
	f.cache[issuer] = cachedKeys{keys: keys, fetched: f.now()}
	f.mu.Unlock()
	return keys, nil
}

func (f *Federation) getJSON(ctx context.Context, url string, v any) error {
	if f.Client == nil {
		return errors.New("no client configured for external issuers")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := f.Client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}
