package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"math/big"
)

// JWK is one public key of a JSON Web Key Set.
type JWK struct {
	KTY string `json:"kty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Kid string `json:"kid"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// RSAJWK describes an RSA public key for signing.
func RSAJWK(pub *rsa.PublicKey, kid string) JWK {
	return JWK{KTY: "RSA", Use: "sig", Alg: "RS256", Kid: kid,
		N: b64.EncodeToString(pub.N.Bytes()), E: b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes())}
}

// KeyID derives a stable key ID from a public key (base64url SHA-256 of its
// PKIX form), as Kubernetes does for its service-account keys.
func KeyID(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return b64.EncodeToString(sum[:])
}

// Find returns the public key with kid; with an empty kid, the only key.
func (s JWKS) Find(kid string) (crypto.PublicKey, error) {
	for _, k := range s.Keys {
		if k.Kid == kid || (kid == "" && len(s.Keys) == 1) {
			return k.Public()
		}
	}
	return nil, fmt.Errorf("no key %q in the issuer's JWKS", kid)
}

// Public decodes the JWK into a crypto public key.
func (k JWK) Public() (crypto.PublicKey, error) {
	switch k.KTY {
	case "RSA":
		n, err1 := b64.DecodeString(k.N)
		e, err2 := b64.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("jwk %q: bad RSA n or e", k.Kid)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	case "EC":
		if k.Crv != "P-256" {
			return nil, fmt.Errorf("jwk %q: curve %q not supported", k.Kid, k.Crv)
		}
		x, err1 := b64.DecodeString(k.X)
		y, err2 := b64.DecodeString(k.Y)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("jwk %q: bad EC point", k.Kid)
		}
		pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		if _, err := pub.ECDH(); err != nil { // rejects points off the curve
			return nil, fmt.Errorf("jwk %q: %w", k.Kid, err)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("jwk %q: key type %q not supported", k.Kid, k.KTY)
}
