package imds

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"kvmount.dev/kvmount/internal/azsim/entra"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// TestRateLimit: within one second the 21st request gets 429 with
// Retry-After; a second later requests pass again. The clock is the
// test's, so a slow machine cannot spread the burst.
func TestRateLimit(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "azsim.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.Update(func(tx *store.Tx) error {
		if err := store.PutPrincipal(tx, store.Principal{ObjectID: "sys", ClientID: "c", TenantID: "t", Kind: store.KindSystemAssigned}); err != nil {
			return err
		}
		return store.Put(tx, store.BucketMachines, "vm/rg/vm", store.Machine{Name: "vm", ResourceGroup: "rg", SystemAssigned: "sys"})
	})
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := time.Unix(1_800_000_000, 0)
	h := New(Config{DB: db, Issuer: entra.NewIssuer(key, nil), Machine: "vm/rg/vm", Now: func() time.Time { return now }})
	get := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "http://imds/metadata/identity/oauth2/token?api-version=2018-02-01&resource=r", nil)
		req.Header.Set("Metadata", "true")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for i := range 20 {
		if rec := get(); rec.Code != http.StatusOK {
			t.Fatalf("request %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	if rec := get(); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("21st request in a second: %d, Retry-After %q; want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	now = now.Add(time.Second)
	if rec := get(); rec.Code != http.StatusOK {
		t.Fatalf("a second later: %d", rec.Code)
	}
}
