// Package entra is azsim's Entra ID: it issues the access tokens every other
// part of azsim hands out (client credentials here, managed identities
// through IMDS) and serves the v2.0 token endpoint, OIDC discovery and the
// signing keys, with client secrets and workload-identity federation checked
// for real.
package entra

import (
	"crypto/rsa"
	"fmt"
	"strings"
	"time"

	"kvmount.dev/kvmount/internal/azsim/jwt"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// Issuer signs and verifies azsim access tokens.
type Issuer struct {
	key *rsa.PrivateKey
	kid string
	now func() time.Time
}

// NewIssuer returns an issuer signing with key.
func NewIssuer(key *rsa.PrivateKey, now func() time.Time) *Issuer {
	if now == nil {
		now = time.Now
	}
	return &Issuer{key: key, kid: jwt.KeyID(&key.PublicKey), now: now}
}

// Token is an issued access token.
type Token struct {
	Value     string
	NotBefore time.Time
	ExpiresOn time.Time
}

// Issue signs a v1 access token for principal p and resource (the token's
// audience) that lives for lifetime.
func (i *Issuer) Issue(p store.Principal, resource string, lifetime time.Duration) (Token, error) {
	now := i.now().Truncate(time.Second)
	c := jwt.Claims{
		Issuer: "https://sts.windows.net/" + p.TenantID + "/", Subject: p.ObjectID, Audiences: jwt.Audience{resource},
		IssuedAt: now.Unix(), NotBefore: now.Unix(), ExpiresAt: now.Add(lifetime).Unix(),
		TenantID: p.TenantID, ObjectID: p.ObjectID, AppID: p.ClientID, AZP: p.ClientID, IDType: "app", Version: "1.0",
	}
	if p.Kind == store.KindUserAssigned {
		c.MIResID = p.ResourceID
	}
	v, err := jwt.Sign(i.key, i.kid, c)
	if err != nil {
		return Token{}, err
	}
	return Token{Value: v, NotBefore: now, ExpiresOn: now.Add(lifetime)}, nil
}

// Verify checks that token was signed by this issuer and is within its
// lifetime (one minute of skew), returning its claims. Audience and tenant
// are the relying party's to check.
func (i *Issuer) Verify(token string) (jwt.Claims, error) {
	p, err := jwt.Parse(token)
	if err != nil {
		return jwt.Claims{}, err
	}
	if p.Kid != i.kid {
		return jwt.Claims{}, fmt.Errorf("%w: unknown signing key %q", jwt.ErrSignature, p.Kid)
	}
	if err := p.VerifySignature(&i.key.PublicKey); err != nil {
		return jwt.Claims{}, err
	}
	if err := p.Claims.CheckTime(i.now(), time.Minute); err != nil {
		return jwt.Claims{}, err
	}
	return p.Claims, nil
}

// JWKS is the issuer's public key set.
func (i *Issuer) JWKS() jwt.JWKS {
	return jwt.JWKS{Keys: []jwt.JWK{jwt.RSAJWK(&i.key.PublicKey, i.kid)}}
}

// ResourceFromScope turns an OAuth2 scope list into the v1 resource it
// names: the first scope ending in /.default, without that suffix.
func ResourceFromScope(scope string) (string, bool) {
	for _, s := range strings.Fields(scope) {
		if r, ok := strings.CutSuffix(s, "/.default"); ok && r != "" {
			return r, true
		}
	}
	return "", false
}
