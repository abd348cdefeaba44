package pki

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// TestPKIReused proves a second start in the same dir keeps the CA and leaf
// certificates (so kubeconfigs stay valid) and reissues a leaf whose names
// changed.
func TestPKIReused(t *testing.T) {
	dir := t.TempDir()
	ca1, err := LoadOrCreateCA(dir, "test CA")
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{CommonName: "kube-apiserver", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true}
	crt, _, err := ca1.Issue(dir, "apiserver", spec)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(crt)

	ca2, err := LoadOrCreateCA(dir, "test CA")
	if err != nil {
		t.Fatal(err)
	}
	if !ca2.cert.Equal(ca1.cert) {
		t.Fatal("CA was regenerated on the second load")
	}
	if _, _, err := ca2.Issue(dir, "apiserver", spec); err != nil {
		t.Fatal(err)
	}
	if second, _ := os.ReadFile(crt); string(second) != string(first) {
		t.Error("unchanged leaf certificate was reissued")
	}
	spec.DNSNames = []string{"localhost"}
	if _, _, err := ca2.Issue(dir, "apiserver", spec); err != nil {
		t.Fatal(err)
	}
	if third, _ := os.ReadFile(crt); string(third) == string(first) {
		t.Error("leaf certificate with new names was not reissued")
	}
}

func TestServiceAccountKeyReused(t *testing.T) {
	dir := t.TempDir()
	p1, err := RSAKey(filepath.Join(dir, "sa.key"))
	if err != nil {
		t.Fatal(err)
	}
	k1, _ := os.ReadFile(p1)
	p2, err := RSAKey(filepath.Join(dir, "sa.key"))
	if err != nil {
		t.Fatal(err)
	}
	if k2, _ := os.ReadFile(p2); string(k1) != string(k2) {
		t.Error("service-account key regenerated: every issued token would break")
	}
}
