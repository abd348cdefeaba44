// Package jwt signs and verifies the JSON Web Tokens azsim deals in: the
// access tokens it issues (RS256, like Entra ID) and the service-account
// tokens a Kubernetes issuer signs for workload-identity federation (RS256
// or ES256). It implements only the compact JWS form and these algorithms;
// anything else is refused.
package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Errors a verifier can branch on.
var (
	ErrMalformed = errors.New("malformed token")
	ErrSignature = errors.New("token signature is invalid")
	ErrExpired   = errors.New("token is expired")
	ErrNotYet    = errors.New("token is not valid yet")
)

// Claims is a token's payload. Audience is a string or a list on the wire;
// Audiences holds either form.
type Claims struct {
	Issuer    string   `json:"iss,omitempty"`
	Subject   string   `json:"sub,omitempty"`
	Audiences Audience `json:"aud,omitempty"`
	ExpiresAt int64    `json:"exp,omitempty"`
	NotBefore int64    `json:"nbf,omitempty"`
	IssuedAt  int64    `json:"iat,omitempty"`
	// Entra ID claims.
	TenantID string `json:"tid,omitempty"`
	ObjectID string `json:"oid,omitempty"`
	AppID    string `json:"appid,omitempty"`
	AZP      string `json:"azp,omitempty"`
	IDType   string `json:"idtyp,omitempty"`
	Version  string `json:"ver,omitempty"`
	// MIResID is set on managed-identity tokens (xms_mirid).
	MIResID string `json:"xms_mirid,omitempty"`
}

// Audience is the aud claim: one string or several.
type Audience []string

// MarshalJSON writes a single audience as a plain string, as Entra does.
func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// UnmarshalJSON accepts a string or a list of strings.
func (a *Audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = Audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("aud: %w", err)
	}
	*a = many
	return nil
}

// Has reports whether the audience list contains aud.
func (a Audience) Has(aud string) bool {
	for _, x := range a {
		if x == aud {
			return true
		}
	}
	return false
}

type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ,omitempty"`
	Kid string `json:"kid,omitempty"`
}

var b64 = base64.RawURLEncoding

// Sign returns a compact RS256 token with kid in its header.
func Sign(key *rsa.PrivateKey, kid string, c Claims) (string, error) {
	h, err := json.Marshal(header{Alg: "RS256", Typ: "JWT", Kid: kid})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// Parsed is a token split into its parts, signature not yet checked.
type Parsed struct {
	Alg, Kid string
	Claims   Claims
	input    []byte
	sig      []byte
}

// Parse decodes a compact token without verifying it.
func Parse(token string) (Parsed, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Parsed{}, fmt.Errorf("%w: want 3 dot-separated parts, got %d", ErrMalformed, len(parts))
	}
	var p Parsed
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return p, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return p, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	pb, err := b64.DecodeString(parts[1])
	if err != nil {
		return p, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	if err := json.Unmarshal(pb, &p.Claims); err != nil {
		return p, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	if p.sig, err = b64.DecodeString(parts[2]); err != nil {
		return p, fmt.Errorf("%w: signature: %w", ErrMalformed, err)
	}
	p.Alg, p.Kid, p.input = h.Alg, h.Kid, []byte(parts[0]+"."+parts[1])
	return p, nil
}

// VerifySignature checks the signature with pub (*rsa.PublicKey for RS256,
// *ecdsa.PublicKey for ES256).
func (p Parsed) VerifySignature(pub crypto.PublicKey) error {
	sum := sha256.Sum256(p.input)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if p.Alg != "RS256" || rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], p.sig) != nil {
			return ErrSignature
		}
	case *ecdsa.PublicKey:
		if p.Alg != "ES256" || len(p.sig) != 64 {
			return ErrSignature
		}
		r, s := new(big.Int).SetBytes(p.sig[:32]), new(big.Int).SetBytes(p.sig[32:])
		if !ecdsa.Verify(k, sum[:], r, s) {
			return ErrSignature
		}
	default:
		return fmt.Errorf("%w: unsupported key type %T", ErrSignature, pub)
	}
	return nil
}

// CheckTime checks exp and nbf against now, allowing skew either way.
func (c Claims) CheckTime(now time.Time, skew time.Duration) error {
	if c.ExpiresAt == 0 || now.Add(-skew).Unix() >= c.ExpiresAt {
		return fmt.Errorf("%w (exp %s)", ErrExpired, time.Unix(c.ExpiresAt, 0).UTC().Format(time.RFC3339))
	}
	if c.NotBefore != 0 && now.Add(skew).Unix() < c.NotBefore {
		return fmt.Errorf("%w (nbf %s)", ErrNotYet, time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339))
	}
	return nil
}
