package azsim_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	xpkcs12 "golang.org/x/crypto/pkcs12"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
)

// fullAccess is a vault kv1 and an app allowed everything on it.
func fullAccess(t *testing.T) (*azsim.Server, azcore.TokenCredential) {
	t.Helper()
	s := startServer(t, azsim.Config{})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	all := ptr([]string{"all"})
	admin(t, s, "keyvault set-policy", arm.PolicyArgs{Name: "kv1", SPN: sp["appId"].(string), Secrets: all, Keys: all, Certificates: all})
	return s, spCredential(t, s, sp)
}

func noRetry(s *azsim.Server) azcore.ClientOptions {
	o := clientOptions(s)
	o.Retry = policy.RetryOptions{MaxRetries: -1}
	return o
}

// TestKeys creates and imports RSA, EC and oct keys with azkeys and checks
// the public JWK that comes back matches.
func TestKeys(t *testing.T) {
	ctx := context.Background()
	s, cred := fullAccess(t)
	c, err := azkeys.NewClient(azsim.VaultURL("kv1"), cred, &azkeys.ClientOptions{ClientOptions: noRetry(s)})
	if err != nil {
		t.Fatal(err)
	}
	rsaKT, ecKT, octKT := azkeys.KeyTypeRSA, azkeys.KeyTypeEC, azkeys.KeyTypeOct
	tests := []struct {
		name   string
		params azkeys.CreateKeyParameters
		check  func(*azkeys.JSONWebKey) bool
	}{
		{"rsa-3072", azkeys.CreateKeyParameters{Kty: &rsaKT, KeySize: ptr(int32(3072))}, func(k *azkeys.JSONWebKey) bool { return len(k.N) == 384 && len(k.E) == 3 }},
		{"ec-p384", azkeys.CreateKeyParameters{Kty: &ecKT, Curve: ptr(azkeys.CurveNameP384)}, func(k *azkeys.JSONWebKey) bool {
			return *k.Crv == azkeys.CurveNameP384 && len(k.X) == 48 && len(k.Y) == 48
		}},
		{"ec-p521", azkeys.CreateKeyParameters{Kty: &ecKT, Curve: ptr(azkeys.CurveNameP521)}, func(k *azkeys.JSONWebKey) bool { return len(k.X) == 66 }},
		{"oct-256", azkeys.CreateKeyParameters{Kty: &octKT, KeySize: ptr(int32(256))}, func(k *azkeys.JSONWebKey) bool { return k.K == nil && k.N == nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.CreateKey(ctx, tt.name, tt.params, nil); err != nil {
				t.Fatalf("CreateKey: %v", err)
			}
			got, err := c.GetKey(ctx, tt.name, "", nil)
			if err != nil {
				t.Fatalf("GetKey: %v", err)
			}
			if got.Key.D != nil || !tt.check(got.Key) {
				t.Errorf("unexpected JWK %+v", got.Key)
			}
		})
	}
	_, err = c.CreateKey(ctx, "small", azkeys.CreateKeyParameters{Kty: &rsaKT, KeySize: ptr(int32(1024))}, nil)
	wantResponseError(t, err, http.StatusBadRequest, "BadParameter", "Invalid key size 1024")

	t.Run("import rsa", func(t *testing.T) {
		priv, _ := rsa.GenerateKey(rand.Reader, 2048)
		jwk := &azkeys.JSONWebKey{Kty: &rsaKT, N: priv.N.Bytes(), E: big.NewInt(int64(priv.E)).Bytes(), D: priv.D.Bytes(),
			P: priv.Primes[0].Bytes(), Q: priv.Primes[1].Bytes()}
		if _, err := c.ImportKey(ctx, "imported-rsa", azkeys.ImportKeyParameters{Key: jwk}, nil); err != nil {
			t.Fatalf("ImportKey: %v", err)
		}
		got, err := c.GetKey(ctx, "imported-rsa", "", nil)
		if err != nil || new(big.Int).SetBytes(got.Key.N).Cmp(priv.N) != 0 {
			t.Fatalf("imported RSA key does not round-trip: %v", err)
		}
	})
	t.Run("import ec", func(t *testing.T) {
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		raw, _ := priv.Bytes()
		pub, _ := priv.PublicKey.Bytes()
		jwk := &azkeys.JSONWebKey{Kty: &ecKT, Crv: ptr(azkeys.CurveNameP256), D: raw, X: pub[1:33], Y: pub[33:]}
		if _, err := c.ImportKey(ctx, "imported-ec", azkeys.ImportKeyParameters{Key: jwk}, nil); err != nil {
			t.Fatalf("ImportKey: %v", err)
		}
		jwk.Y = pub[1:33] // a point that does not match d
		_, err := c.ImportKey(ctx, "bad-ec", azkeys.ImportKeyParameters{Key: jwk}, nil)
		wantResponseError(t, err, http.StatusBadRequest, "BadParameter", "x and y do not match d")
	})
}

// testChain makes a root, an intermediate and a leaf.
func testChain(t *testing.T) (leafKey *rsa.PrivateKey, leaf, inter, root *x509.Certificate) {
	t.Helper()
	mk := func(cn string, isCA bool, parent *x509.Certificate, parentKey *rsa.PrivateKey) (*x509.Certificate, *rsa.PrivateKey) {
		key, _ := rsa.GenerateKey(rand.Reader, 2048)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: isCA, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
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
	root, rootKey := mk("root", true, nil, nil)
	inter, interKey := mk("intermediate", true, root, rootKey)
	leaf, leafKey = mk("leaf.example", false, inter, interKey)
	return leafKey, leaf, inter, root
}

// TestCertificates imports a password-protected PFX and a PEM bundle with a
// chain, creates a self-signed certificate, and reads each backing secret:
// a PFX that both common decoders read, or PEM with the key first.
func TestCertificates(t *testing.T) {
	ctx := context.Background()
	s, cred := fullAccess(t)
	certs, err := azcertificates.NewClient(azsim.VaultURL("kv1"), cred, &azcertificates.ClientOptions{ClientOptions: noRetry(s)})
	if err != nil {
		t.Fatal(err)
	}
	secrets := secretsClient(t, s, "kv1", cred)
	key, leaf, inter, root := testChain(t)

	pfx, err := pkcs12.Modern.Encode(key, leaf, []*x509.Certificate{inter, root}, "p@ss")
	if err != nil {
		t.Fatal(err)
	}
	imp, err := certs.ImportCertificate(ctx, "from-pfx", azcertificates.ImportCertificateParameters{
		Base64EncodedCertificate: ptr(base64.StdEncoding.EncodeToString(pfx)), Password: ptr("p@ss")}, nil)
	if err != nil {
		t.Fatalf("ImportCertificate PFX: %v", err)
	}
	if string(imp.CER) != string(leaf.Raw) {
		t.Error("imported certificate's cer is not the leaf")
	}
	sec, err := secrets.GetSecret(ctx, "from-pfx", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *sec.ContentType != "application/x-pkcs12" || sec.KID == nil || !*sec.Managed {
		t.Errorf("backing secret: contentType %v kid %v managed %v", *sec.ContentType, sec.KID, sec.Managed)
	}
	raw, _ := base64.StdEncoding.DecodeString(*sec.Value)
	if _, c, chain, err := pkcs12.DecodeChain(raw, ""); err != nil || !c.Equal(leaf) || len(chain) != 2 {
		t.Errorf("go-pkcs12 cannot read the backing PFX: %v", err)
	}
	if blocks, err := xpkcs12.ToPEM(raw, ""); err != nil || len(blocks) != 4 {
		t.Errorf("x/crypto/pkcs12 reads %d blocks, err %v; want key + 3 certificates", len(blocks), err)
	}

	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	bundle := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.Raw})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if _, err := certs.ImportCertificate(ctx, "from-pem", azcertificates.ImportCertificateParameters{
		Base64EncodedCertificate: &bundle, CertificatePolicy: &azcertificates.CertificatePolicy{
			SecretProperties: &azcertificates.SecretProperties{ContentType: ptr("application/x-pem-file")}}}, nil); err != nil {
		t.Fatalf("ImportCertificate PEM: %v", err)
	}
	sec, err = secrets.GetSecret(ctx, "from-pem", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantPEMOrder(t, *sec.Value, []string{"PRIVATE KEY", "CERTIFICATE", "CERTIFICATE"}, leaf)

	pol := azcertificates.CertificatePolicy{IssuerParameters: &azcertificates.IssuerParameters{Name: ptr("Self")},
		X509CertificateProperties: &azcertificates.X509CertificateProperties{Subject: ptr("CN=selfsigned.example"), ValidityInMonths: ptr(int32(12))},
		SecretProperties:          &azcertificates.SecretProperties{ContentType: ptr("application/x-pkcs12")}}
	if _, err := certs.CreateCertificate(ctx, "self", azcertificates.CreateCertificateParameters{CertificatePolicy: &pol}, nil); err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	got, err := certs.GetCertificate(ctx, "self", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(got.CER)
	if err != nil || c.Subject.CommonName != "selfsigned.example" || c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) != nil {
		t.Errorf("created certificate: %v %v", c.Subject, err)
	}
	pemOut, err := secrets.GetSecret(ctx, "self", "", &azsecretsGetPEM)
	if err != nil {
		t.Fatalf("GetSecret outContentType PEM: %v", err)
	}
	wantPEMOrder(t, *pemOut.Value, []string{"PRIVATE KEY", "CERTIFICATE"}, c)
}

func wantPEMOrder(t *testing.T, text string, want []string, leaf *x509.Certificate) {
	t.Helper()
	var types []string
	rest := []byte(text)
	first := true
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		types = append(types, b.Type)
		if b.Type == "CERTIFICATE" && first {
			first = false
			if string(b.Bytes) != string(leaf.Raw) {
				t.Error("first certificate in the PEM is not the leaf")
			}
		}
	}
	if strings.Join(types, ",") != strings.Join(want, ",") {
		t.Errorf("PEM blocks %v, want %v", types, want)
	}
}

var azsecretsGetPEM = azsecrets.GetSecretOptions{OutContentType: ptr(azsecrets.ContentTypePEM)}
