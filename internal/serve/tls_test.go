package serve

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writePair(t *testing.T, dir, cn string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
}

// TestCertFilesReload: a renewed certificate is served without a restart;
// a broken pair keeps the last good one.
func TestCertFilesReload(t *testing.T) {
	defer func(d time.Duration) { checkEvery = d }(checkEvery)
	checkEvery = 0
	dir := t.TempDir()
	writePair(t, dir, "first")
	cfg, err := CertFiles(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	cn := func() string {
		c, err := cfg.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		x, _ := x509.ParseCertificate(c.Certificate[0])
		return x.Subject.CommonName
	}
	if cn() != "first" {
		t.Fatal("not the first certificate")
	}
	writePair(t, dir, "renewed-with-a-longer-name")
	if got := cn(); got != "renewed-with-a-longer-name" {
		t.Fatalf("served %q after renewal", got)
	}
	os.WriteFile(filepath.Join(dir, "tls.key"), []byte("half written"), 0o600)
	if got := cn(); got != "renewed-with-a-longer-name" {
		t.Fatalf("served %q after a broken write; want the last good one", got)
	}
	if _, err := CertFiles(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "missing.key")); err == nil {
		t.Fatal("a missing key was accepted at start")
	}
}
