package jwt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func testKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignVerify(t *testing.T) {
	key, other := testKey(t), testKey(t)
	now := time.Now()
	claims := Claims{Issuer: "https://sts.windows.net/t/", Audiences: Audience{"https://vault.azsim.test"},
		ExpiresAt: now.Add(time.Hour).Unix(), NotBefore: now.Unix(), ObjectID: "oid", AppID: "app"}
	tok, err := Sign(key, KeyID(&key.PublicKey), claims)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kid != KeyID(&key.PublicKey) || p.Claims.ObjectID != "oid" || !p.Claims.Audiences.Has("https://vault.azsim.test") {
		t.Errorf("parsed %+v", p)
	}
	tests := []struct {
		name    string
		verify  func() error
		wantErr error
	}{
		{"right key", func() error { return p.VerifySignature(&key.PublicKey) }, nil},
		{"other key", func() error { return p.VerifySignature(&other.PublicKey) }, ErrSignature},
		{"in time", func() error { return p.Claims.CheckTime(now, time.Minute) }, nil},
		{"expired", func() error { return p.Claims.CheckTime(now.Add(2*time.Hour), time.Minute) }, ErrExpired},
		{"not yet", func() error { return p.Claims.CheckTime(now.Add(-time.Hour), time.Minute) }, ErrNotYet},
		{"tampered payload", func() error {
			parts := strings.Split(tok, ".")
			evil, _ := json.Marshal(Claims{ObjectID: "admin", ExpiresAt: claims.ExpiresAt})
			q, err := Parse(parts[0] + "." + b64.EncodeToString(evil) + "." + parts[2])
			if err != nil {
				return err
			}
			return q.VerifySignature(&key.PublicKey)
		}, ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.verify(); !errors.Is(err, tt.wantErr) {
				t.Errorf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestES256AndJWKS(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := b64.EncodeToString([]byte(`{"alg":"ES256","kid":"k1"}`))
	pl := b64.EncodeToString([]byte(`{"iss":"https://issuer","aud":["api://AzureADTokenExchange"],"sub":"system:serviceaccount:ns:sa","exp":9999999999}`))
	sum := sha256.Sum256([]byte(h + "." + pl))
	r, s, err := ecdsa.Sign(rand.Reader, ec, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	p, err := Parse(h + "." + pl + "." + b64.EncodeToString(sig))
	if err != nil {
		t.Fatal(err)
	}
	set := JWKS{Keys: []JWK{{KTY: "EC", Crv: "P-256", Kid: "k1", X: b64.EncodeToString(ec.X.FillBytes(make([]byte, 32))), Y: b64.EncodeToString(ec.Y.FillBytes(make([]byte, 32)))}}}
	pub, err := set.Find("k1")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.VerifySignature(pub); err != nil {
		t.Errorf("ES256 verify: %v", err)
	}
	if !p.Claims.Audiences.Has("api://AzureADTokenExchange") {
		t.Errorf("audience list not decoded: %v", p.Claims.Audiences)
	}
	rsaKey := testKey(t)
	rs := JWKS{Keys: []JWK{RSAJWK(&rsaKey.PublicKey, "r")}}
	got, err := rs.Find("r")
	if err != nil || !got.(*rsa.PublicKey).Equal(&rsaKey.PublicKey) {
		t.Errorf("RSA JWK round trip: %v", err)
	}
	if _, err := rs.Find("missing"); err == nil {
		t.Error("found a kid that is not in the set")
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts
// re-verifies consistently: a parsed token never verifies with a fresh key.
func FuzzParse(f *testing.F) {
	key := testKey(f)
	tok, _ := Sign(key, "k", Claims{Subject: "s", ExpiresAt: 1})
	f.Add(tok)
	f.Add("a.b.c")
	f.Add("..")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	other := testKey(f)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if p.VerifySignature(&other.PublicKey) == nil {
			t.Fatalf("token %q verified with an unrelated key", s)
		}
	})
}
