package keyvault

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"kvmount.dev/kvmount/internal/azure/config"
)

func mkCert(t *testing.T, cn string, ca bool, parent *x509.Certificate, parentKey *rsa.PrivateKey) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: ca, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

// TestOrderChain orders every permutation of a four-certificate chain,
// with and without the leaf's key, and keeps an unrelated certificate last.
func TestOrderChain(t *testing.T) {
	root, rk := mkCert(t, "root", true, nil, nil)
	i1, k1 := mkCert(t, "intermediate 1", true, root, rk)
	i2, k2 := mkCert(t, "intermediate 2", true, i1, k1)
	leaf, lk := mkCert(t, "leaf", false, i2, k2)
	stray, _ := mkCert(t, "stray root", true, nil, nil)
	want := []*x509.Certificate{leaf, i2, i1, root}
	perms := permutations([]*x509.Certificate{root, i1, i2, leaf})
	for _, p := range perms {
		for _, key := range []any{lk, nil} {
			got := OrderChain(key, p)
			for i := range want {
				if !got[i].Equal(want[i]) {
					t.Fatalf("order of %v (key %v): position %d is %s", names(p), key != nil, i, got[i].Subject.CommonName)
				}
			}
		}
	}
	got := OrderChain(lk, []*x509.Certificate{stray, root, leaf, i1, i2})
	if !got[0].Equal(leaf) || !got[4].Equal(stray) {
		t.Errorf("with a stray certificate: %v", names(got))
	}
	if got := OrderChain(nil, []*x509.Certificate{root}); len(got) != 1 {
		t.Errorf("single self-signed certificate: %v", names(got))
	}
}

func names(cs []*x509.Certificate) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Subject.CommonName)
	}
	return n
}

func permutations(cs []*x509.Certificate) [][]*x509.Certificate {
	if len(cs) <= 1 {
		return [][]*x509.Certificate{cs}
	}
	var out [][]*x509.Certificate
	for i := range cs {
		rest := append(append([]*x509.Certificate{}, cs[:i]...), cs[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]*x509.Certificate{cs[i]}, p...))
		}
	}
	return out
}

// FuzzRender feeds arbitrary secret values and content types through the
// certificate-secret and encoding paths: render never panics, and its
// errors never echo the value.
func FuzzRender(f *testing.F) {
	f.Add("aGVsbG8=", "application/x-pkcs12", "kid", "base64")
	f.Add("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "application/x-pem-file", "kid", "utf-8")
	f.Add("zz", "", "", "hex")
	f.Fuzz(func(t *testing.T, value, contentType, kid, enc string) {
		o := config.Object{Type: config.TypeSecret, Name: "s", Encoding: enc, Format: config.FormatPEM}
		_, err := render(o, raw{Value: value, ContentType: contentType, KID: kid}, order{})
		if err != nil && len(value) >= 8 && contains(err.Error(), value) && !contains(contentType+kid+enc, value) {
			t.Fatalf("error echoes the value: %v", err)
		}
	})
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
