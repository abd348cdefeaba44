// Package entraauth checks the Entra ID access tokens Event Grid presents
// to an Entra-protected webhook: signed by the tenant's keys (found by
// OIDC discovery), for one of the webhook's audiences (its app ID URI or
// app ID), issued by the tenant, within their lifetime, and obtained by an
// allowed caller — Event Grid's first-party app by default — so that no
// other principal of the tenant can forge a delivery.
package entraauth

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// EventGridAppID is Event Grid's first-party application: the appid of the
// tokens it obtains to deliver to Entra-protected webhooks.
const EventGridAppID = "4962773b-9cdb-44cf-a8bf-237846a00ab7"

// ErrUnauthenticated is a token that does not pass; the wrapped message
// says why (never the token).
var ErrUnauthenticated = errors.New("unauthenticated")

// Verifier checks tokens. Its fields are set before first use.
type Verifier struct {
	// Authority is Entra ID's host URL (https://login.microsoftonline.com).
	Authority string
	TenantID  string
	// Audiences are the accepted aud values: the webhook app's ID URI
	// and its app ID.
	Audiences []string
	// Callers are the accepted appid (v1) or azp (v2) values; empty is
	// Event Grid's.
	Callers    []string
	HTTPClient *http.Client
	Now        func() time.Time

	mu      sync.Mutex // guards the fields below
	keys    map[string]*rsa.PublicKey
	issuers []string
	fetched time.Time
}

// refetchEvery bounds key fetches: an unknown key ID (a rotation, or a
// forger's guess) fetches the keys again at most this often.
const refetchEvery = time.Minute

// Verify checks token.
func (v *Verifier) Verify(ctx context.Context, token string) error {
	now := v.now()
	claims := struct {
		jwt.RegisteredClaims
		AppID string `json:"appid"`
		AZP   string `json:"azp"`
		TID   string `json:"tid"`
	}{}
	_, err := jwt.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return v.key(ctx, kid)
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(time.Minute),
		jwt.WithTimeFunc(func() time.Time { return now }), jwt.WithAudience(v.Audiences...))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	v.mu.Lock()
	issuers := v.issuers
	v.mu.Unlock()
	if !slices.Contains(issuers, claims.Issuer) {
		return fmt.Errorf("%w: issuer %q is not tenant %s's", ErrUnauthenticated, claims.Issuer, v.TenantID)
	}
	callers := v.Callers
	if len(callers) == 0 {
		callers = []string{EventGridAppID}
	}
	caller := claims.AppID
	if caller == "" {
		caller = claims.AZP
	}
	if !slices.Contains(callers, caller) {
		return fmt.Errorf("%w: the token was obtained by app %q, not by Event Grid (%s)", ErrUnauthenticated, caller, strings.Join(callers, ", "))
	}
	return nil
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// key returns the signing key kid, fetching the tenant's keys on first
// use and when kid is unknown (at most once per refetchEvery).
func (v *Verifier) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.keys[kid]; ok {
		return k, nil
	}
	if !v.fetched.IsZero() && v.now().Sub(v.fetched) < refetchEvery {
		return nil, fmt.Errorf("unknown signing key %q", kid)
	}
	v.fetched = v.now()
	if err := v.fetch(ctx); err != nil {
		return nil, fmt.Errorf("tenant %s's signing keys: %w", v.TenantID, err)
	}
	if k, ok := v.keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("unknown signing key %q", kid)
}

// fetch reads the tenant's OIDC discovery document and its key set; v.mu
// is held.
func (v *Verifier) fetch(ctx context.Context) error {
	base := strings.TrimRight(v.Authority, "/") + "/" + v.TenantID
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := v.get(ctx, base+"/v2.0/.well-known/openid-configuration", &disc); err != nil {
		return err
	}
	if disc.JWKSURI == "" {
		return errors.New("the discovery document has no jwks_uri")
	}
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			N   string `json:"n"`
			E   string `json:"e"`
		} `json:"keys"`
	}
	if err := v.get(ctx, disc.JWKSURI, &set); err != nil {
		return err
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(e) > 4 {
			continue
		}
		keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	v.keys = keys
	// Entra issues v1 tokens (sts.windows.net) unless the app asks for
	// v2; both name the tenant.
	v.issuers = []string{"https://sts.windows.net/" + v.TenantID + "/", strings.ReplaceAll(disc.Issuer, "{tenantid}", v.TenantID)}
	return nil
}

func (v *Verifier) get(ctx context.Context, url string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	client := v.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out)
}
