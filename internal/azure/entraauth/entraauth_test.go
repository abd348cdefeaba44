package entraauth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"

// idp is a tenant's discovery document and key set.
type idp struct {
	srv     *httptest.Server
	key     *rsa.PrivateKey
	fetches atomic.Int32
}

func newIDP(t *testing.T) *idp {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("/"+tenant+"/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": p.srv.URL + "/{tenantid}/v2.0", "jwks_uri": p.srv.URL + "/" + tenant + "/discovery/v2.0/keys"})
	})
	mux.HandleFunc("/"+tenant+"/discovery/v2.0/keys", func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "k1",
			"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()), "e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes())}}})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func sign(t *testing.T, key *rsa.PrivateKey, kid string, claims jwt.MapClaims) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	p := newIDP(t)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := time.Now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": "https://sts.windows.net/" + tenant + "/", "aud": "api://kvmount-events", "appid": EventGridAppID, "tid": tenant,
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	}
	with := func(k string, val any) jwt.MapClaims {
		c := good()
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	for _, tc := range []struct {
		name    string
		token   string
		wantErr string
	}{
		{"v1 token from Event Grid", sign(t, p.key, "k1", good()), ""},
		{"v2 issuer, azp", sign(t, p.key, "k1", with("appid", nil)), "not by Event Grid"},
		{"v2 token", sign(t, p.key, "k1", func() jwt.MapClaims {
			c := with("appid", nil)
			c["azp"], c["iss"] = EventGridAppID, p.srv.URL+"/"+tenant+"/v2.0"
			return c
		}()), ""},
		{"app ID as audience", sign(t, p.key, "k1", with("aud", "0b1c2d3e-0000-0000-0000-000000000000")), ""},
		{"another audience", sign(t, p.key, "k1", with("aud", "https://vault.azure.net")), "audience"},
		{"another tenant's issuer", sign(t, p.key, "k1", with("iss", "https://sts.windows.net/00000000-0000-0000-0000-000000000000/")), "issuer"},
		{"another app of the tenant", sign(t, p.key, "k1", with("appid", "11111111-1111-1111-1111-111111111111")), "not by Event Grid"},
		{"expired", sign(t, p.key, "k1", with("exp", now.Add(-time.Hour).Unix())), "expired"},
		{"no expiry", sign(t, p.key, "k1", with("exp", nil)), "exp"},
		{"signed by another key", sign(t, other, "k1", good()), "signature"},
		{"unknown key", sign(t, other, "k2", good()), "unknown signing key"},
		{"alg none", func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good()).SignedString(jwt.UnsafeAllowNoneSignatureType)
			return s
		}(), "signing method"},
		{"garbage", "not.a.token", "malformed"},
	} {
		v := &Verifier{Authority: p.srv.URL, TenantID: tenant, Audiences: []string{"api://kvmount-events", "0b1c2d3e-0000-0000-0000-000000000000"}, HTTPClient: p.srv.Client()}
		err := v.Verify(context.Background(), tc.token)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: err %v, want ErrUnauthenticated saying %q", tc.name, err, tc.wantErr)
		}
	}
}

// TestKeyFetchesBounded: forged tokens naming unknown keys do not make the
// verifier fetch the key set for each.
func TestKeyFetchesBounded(t *testing.T) {
	p := newIDP(t)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	v := &Verifier{Authority: p.srv.URL, TenantID: tenant, Audiences: []string{"a"}, HTTPClient: p.srv.Client()}
	for i := range 50 {
		tok := sign(t, other, "forged-"+string(rune('a'+i%26)), jwt.MapClaims{"aud": "a", "exp": time.Now().Add(time.Hour).Unix()})
		if err := v.Verify(context.Background(), tok); err == nil {
			t.Fatal("a forged token passed")
		}
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("%d key set fetches for 50 forged tokens, want 1", n)
	}
}
