// Package azsimtest holds test helpers for code that talks to azsim, in the
// manner of net/http/httptest: an external OIDC issuer (what a cluster's
// service-account issuer is to Entra ID) for workload-identity tests.
package azsimtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kvmount.dev/kvmount/internal/azsim/jwt"
)

// Issuer is an OIDC issuer over TLS publishing a discovery document and
// one RSA signing key, as a Kubernetes API server does.
type Issuer struct {
	// URL is the issuer, the iss of its tokens.
	URL string
	// CAFile is a PEM file trusting the issuer's certificate, for
	// azsim's TrustCAFiles.
	CAFile string
	key    *rsa.PrivateKey
}

// NewIssuer starts an issuer that t's cleanup stops.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := &Issuer{key: key}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": iss.URL, "jwks_uri": iss.URL + "/openid/v1/jwks"})
		case "/openid/v1/jwks":
			json.NewEncoder(w).Encode(jwt.JWKS{Keys: []jwt.JWK{jwt.RSAJWK(&key.PublicKey, "sa-key")}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	iss.URL = srv.URL
	iss.CAFile = filepath.Join(t.TempDir(), "issuer-ca.crt")
	if err := os.WriteFile(iss.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return iss
}

// Token signs a service-account token for system:serviceaccount:ns:sa with
// the workload-identity audience, valid for an hour.
func (i *Issuer) Token(ns, sa string) string {
	now := time.Now()
	tok, _ := jwt.Sign(i.key, "sa-key", jwt.Claims{Issuer: i.URL, Subject: "system:serviceaccount:" + ns + ":" + sa,
		Audiences: jwt.Audience{"api://AzureADTokenExchange"}, IssuedAt: now.Unix(), NotBefore: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix()})
	return tok
}
