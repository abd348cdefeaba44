package config

import (
	"testing"

	"kvmount.dev/kvmount/internal/refresh"
)

func TestReferencesAndChangedBy(t *testing.T) {
	params := map[string]string{"keyvaultName": "KV1", "objects": `array:
  - |
    objectName: db
    objectType: secret
  - |
    objectName: tls
    objectType: cert
  - |
    objectName: signing
    objectType: key
    keyvaultName: kv2
`}
	refs := References(params)
	if len(refs) != 3 || refs[0].Vault != "KV1" || refs[2].Vault != "kv2" {
		t.Fatalf("References = %+v; want three objects with their vaults", refs)
	}
	change := func(vault, kind, name string) refresh.Change {
		return refresh.Change{ID: "1", Vault: vault, Kind: kind, Name: name}
	}
	for _, tc := range []struct {
		c    refresh.Change
		want []bool // db, tls, signing
	}{
		{change("kv1", refresh.KindSecret, "DB"), []bool{true, false, false}},
		{change("kv1", refresh.KindKey, "db"), []bool{false, false, false}},
		{change("kv1", refresh.KindCertificate, "tls"), []bool{false, true, false}},
		{change("kv2", refresh.KindKey, "signing"), []bool{false, false, true}},
		{change("kv1", refresh.KindKey, "signing"), []bool{false, false, false}},
		{change("kv10", refresh.KindSecret, "db"), []bool{false, false, false}},
	} {
		for i, o := range refs {
			if got := o.ChangedBy(tc.c, o.Vault); got != tc.want[i] {
				t.Errorf("%s changes %s/%s: %v, want %v", tc.c, o.Type, o.Name, got, tc.want[i])
			}
		}
	}
	// A certificate's new version is also its secret's and its key's.
	for _, typ := range []string{TypeSecret, TypeKey, TypeCert} {
		if !(Object{Name: "c", Type: typ}).ChangedBy(change("kv", refresh.KindCertificate, "c"), "kv") {
			t.Errorf("a certificate change does not reach its %s object", typ)
		}
	}
	if References(map[string]string{"objects": "not: [yaml"}) != nil {
		t.Error("a class whose objects do not parse references something")
	}
}
