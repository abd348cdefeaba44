package imds

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"kvmount.dev/kvmount/internal/azsim/entra"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// FuzzQuery sends arbitrary token queries: IMDS answers 200 or a JSON 4xx,
// and a token only for an identity the machine has.
func FuzzQuery(f *testing.F) {
	db, err := store.Open(filepath.Join(f.TempDir(), "azsim.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	_ = db.Update(func(tx *store.Tx) error {
		if err := store.PutPrincipal(tx, store.Principal{ObjectID: "sys", ClientID: "syscid", TenantID: "t", Kind: store.KindSystemAssigned}); err != nil {
			return err
		}
		return store.Put(tx, store.BucketMachines, "vm/rg/vm", store.Machine{Name: "vm", ResourceGroup: "rg", SystemAssigned: "sys"})
	})
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	h := New(Config{DB: db, Issuer: entra.NewIssuer(key, nil), Machine: "vm/rg/vm", PerSecond: 1 << 30})
	f.Add("api-version=2018-02-01&resource=https://vault.azure.net")
	f.Add("api-version=2018-02-01&resource=r&client_id=syscid")
	f.Add("api-version=2018-02-01&resource=r&msi_res_id=%2Fsubscriptions%2Fx")
	f.Add("%%%")
	f.Fuzz(func(t *testing.T, query string) {
		req := httptest.NewRequest(http.MethodGet, "http://imds/metadata/identity/oauth2/token", nil)
		req.URL.RawQuery = query
		req.Header.Set("Metadata", "true")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%q: non-JSON or non-string answer %q", query, rec.Body)
		}
		switch rec.Code {
		case 200:
			if body["client_id"] != "syscid" {
				t.Fatalf("%q: token for %q", query, body["client_id"])
			}
		case 400:
		default:
			t.Fatalf("%q: status %d", query, rec.Code)
		}
	})
}
