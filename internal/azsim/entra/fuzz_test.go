package entra

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"kvmount.dev/kvmount/internal/azsim/store"
)

// FuzzToken posts arbitrary forms to the token endpoint: it must answer an
// OAuth2 JSON error or a token, never a 5xx, and never a token without a
// valid secret.
func FuzzToken(f *testing.F) {
	db, err := store.Open(filepath.Join(f.TempDir(), "azsim.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	_ = db.Update(func(tx *store.Tx) error {
		if err := store.Put(tx, store.BucketApps, "app1", store.App{AppID: "app1", ObjectID: "sp1", SecretHashes: []string{HashSecret("right")}}); err != nil {
			return err
		}
		return store.PutPrincipal(tx, store.Principal{ObjectID: "sp1", ClientID: "app1", TenantID: "t1", Kind: store.KindApp})
	})
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	h := New(Config{DB: db, Issuer: NewIssuer(key, nil), BaseURL: "https://login.azsim.test", Federation: &Federation{}})
	f.Add("t1", "grant_type=client_credentials&client_id=app1&client_secret=right&scope=https%3A%2F%2Fvault.azsim.test%2F.default")
	f.Add("t1", "grant_type=client_credentials&client_id=app1&client_assertion=a.b.c&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer&scope=x/.default")
	f.Add("t2", "grant_type=password")
	f.Add("t1", "%zz")
	f.Fuzz(func(t *testing.T, tenant, form string) {
		req := httptest.NewRequest(http.MethodPost, "https://login.azsim.test/x/oauth2/v2.0/token", strings.NewReader(form))
		req.URL.Path = "/" + tenant + "/oauth2/v2.0/token"
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%q: %d %s", form, rec.Code, rec.Body)
		}
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("non-JSON answer %q", rec.Body)
		}
		if rec.Code == 200 && (!strings.Contains(form, "client_secret=right") || tenant != "t1") {
			t.Fatalf("token issued for form %q in tenant %q", form, tenant)
		}
	})
}
