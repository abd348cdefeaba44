package store

import (
	"path/filepath"
	"testing"
)

// TestVersionsAndLatest: versions come back in creation order whatever
// their (random) version strings, and Latest picks each object's newest,
// also when one name is a prefix of another.
func TestVersionsAndLatest(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	puts := []Secret{
		{Vault: "kv", Name: "a", Version: "ffff", Seq: 1, Value: "a1"},
		{Vault: "kv", Name: "a", Version: "0000", Seq: 2, Value: "a2"},
		{Vault: "kv", Name: "a-b", Version: "1111", Seq: 3, Value: "ab1"},
		{Vault: "kv", Name: "a", Version: "8888", Seq: 4, Value: "a3"},
		{Vault: "kv2", Name: "a", Version: "9999", Seq: 5, Value: "other vault"},
	}
	if err := db.Update(func(tx *Tx) error {
		for _, s := range puts {
			if err := Put(tx, BucketSecrets, ObjectKey(s.Vault, s.Name, s.Version), s); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *Tx) error {
		vs, err := Versions[Secret](tx, BucketSecrets, "KV", "A")
		if err != nil || len(vs) != 3 || vs[0].Value != "a1" || vs[2].Value != "a3" {
			t.Errorf("Versions = %+v, %v; want a1, a2, a3", vs, err)
		}
		latest, err := Latest[Secret](tx, BucketSecrets, "kv")
		byName := map[string]string{}
		for _, l := range latest {
			byName[l.Name] = l.Value
		}
		if err != nil || len(latest) != 2 || byName["a"] != "a3" || byName["a-b"] != "ab1" {
			t.Errorf("Latest = %+v, %v; want a3 and ab1", latest, err)
		}
		return nil
	})
}
