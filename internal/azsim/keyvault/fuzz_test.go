package keyvault

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kvmount.dev/kvmount/internal/azsim/entra"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// FuzzRoute checks that routing never panics and only lets valid names and
// versions through.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{"/secrets/a/", "/secrets/a/0123456789abcdef0123456789abcdef", "/keys/k/create", "/certificates/c/pending",
		"/secrets", "/secrets/a/versions", "/secrets/../x", "/secrets/a%2Fb", "//", ""} {
		f.Add("GET", s)
		f.Add("POST", s)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		o, err := route(method, path)
		if err != nil {
			return
		}
		if o.name != "" && !nameRE.MatchString(o.name) {
			t.Fatalf("route(%q) let name %q through", path, o.name)
		}
		if o.version != "" && !versionRE.MatchString(o.version) {
			t.Fatalf("route(%q) let version %q through", path, o.version)
		}
		if o.run == nil || o.perm == "" {
			t.Fatalf("route(%q) returned an op without run or perm", path)
		}
	})
}

// FuzzHandler sends arbitrary authenticated requests to a vault: the data
// plane must never fail with a 5xx or answer anything but JSON.
func FuzzHandler(f *testing.F) {
	db, err := store.Open(filepath.Join(f.TempDir(), "azsim.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	iss := entra.NewIssuer(key, nil)
	p := store.Principal{ObjectID: "oid", ClientID: "cid", TenantID: "t1", Kind: store.KindApp}
	tok, _ := iss.Issue(p, "https://vault.azsim.test", time.Hour)
	_ = db.Update(func(tx *store.Tx) error {
		return store.Put(tx, store.BucketVaults, "kv1", store.Vault{Name: "kv1", TenantID: "t1",
			Policies: []store.AccessPolicy{{TenantID: "t1", ObjectID: "oid", Secrets: []string{"all"}, Keys: []string{"all"}, Certificates: []string{"all"}}}})
	})
	h := New(Config{DB: db, DNSSuffix: "vault.azsim.test", Resource: "https://vault.azsim.test", LoginURL: "https://login.azsim.test", Verifier: iss})
	f.Add("PUT", "/secrets/s1", `{"value":"x","attributes":{"enabled":false,"exp":1}}`)
	f.Add("POST", "/keys/k/create", `{"kty":"EC","crv":"P-384"}`)
	f.Add("PUT", "/keys/k", `{"key":{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQ","p":"AQ","q":"AQ"}}`)
	f.Add("POST", "/certificates/c/import", `{"value":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"}`)
	f.Add("POST", "/certificates/c/create", `{"policy":{"x509_props":{"subject":"CN=a"},"key_props":{"kty":"EC"}}}`)
	f.Add("PATCH", "/secrets/s1", `{"tags":{"a":"b"}}`)
	f.Add("GET", "/secrets/s1/versions", ``)
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req := httptest.NewRequest(http.MethodGet, "https://kv1.vault.azsim.test/", strings.NewReader(body))
		req.Method, req.URL.Path, req.URL.RawQuery = method, path, "api-version=7.4"
		req.Header.Set("Authorization", "Bearer "+tok.Value)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, rec.Code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: non-JSON answer %q", method, path, rec.Body)
		}
	})
}
