package tlssecret

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

func certAndKey(t testing.TB) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "leaf"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// TestPart: from PEM (key first, as Key Vault writes it) and from PKCS#12,
// tls.crt is the certificates and tls.key the key in SEC 1 form; text that
// is neither is refused.
func TestPart(t *testing.T) {
	cert, key := certAndKey(t)
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	pemFile := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})...)
	pfx, err := pkcs12.Modern.Encode(key, cert, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, file := range map[string][]byte{"PEM": pemFile, "PKCS#12": pfx} {
		crt, err := Part(file, "tls.crt")
		if err != nil || !strings.HasPrefix(string(crt), "-----BEGIN CERTIFICATE-----") || strings.Contains(string(crt), "PRIVATE") {
			t.Errorf("%s tls.crt: %v %q", name, err, crt)
		}
		k, err := Part(file, "tls.key")
		if err != nil || !strings.HasPrefix(string(k), "-----BEGIN EC PRIVATE KEY-----") || strings.Contains(string(k), "CERTIFICATE") {
			t.Errorf("%s tls.key: %v %q", name, err, k)
		}
	}
	if _, err := Part([]byte("plain text"), "tls.crt"); err == nil || !strings.Contains(err.Error(), "neither PEM nor a PKCS#12") {
		t.Errorf("plain text: %v", err)
	}
	if _, err := Part(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), "tls.key"); err == nil || !strings.Contains(err.Error(), "no private key") {
		t.Errorf("certificate only: %v", err)
	}
}

// FuzzPart: any file gives a part or an error, never a panic.
func FuzzPart(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), true)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), false)
	f.Add([]byte{0x30, 0x82, 0x01}, false)
	f.Fuzz(func(t *testing.T, file []byte, crt bool) {
		key := "tls.key"
		if crt {
			key = "tls.crt"
		}
		if out, err := Part(file, key); err == nil && len(out) == 0 {
			t.Error("no error and no part")
		}
	})
}
