package azsim_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"

	"kvmount.dev/kvmount/internal/azsim"
)

// TestSelfSignedPolicy: certificate create honours every SAN kind, the key
// usage and the EKUs of its policy, and reports them back in the policy
// (found by running the SDK's own test suites against azsim).
func TestSelfSignedPolicy(t *testing.T) {
	ctx := context.Background()
	s, cred := fullAccess(t)
	certs, err := azcertificates.NewClient(azsim.VaultURL("kv1"), cred, &azcertificates.ClientOptions{ClientOptions: noRetry(s)})
	if err != nil {
		t.Fatal(err)
	}
	ku := []*azcertificates.KeyUsageType{ptr(azcertificates.KeyUsageTypeDigitalSignature), ptr(azcertificates.KeyUsageTypeKeyCertSign)}
	pol := azcertificates.CertificatePolicy{IssuerParameters: &azcertificates.IssuerParameters{Name: ptr("Self")},
		X509CertificateProperties: &azcertificates.X509CertificateProperties{Subject: ptr("CN=policy.example"), ValidityInMonths: ptr(int32(6)),
			KeyUsage: ku, EnhancedKeyUsage: []*string{ptr("1.3.6.1.5.5.7.3.3")},
			SubjectAlternativeNames: &azcertificates.SubjectAlternativeNames{DNSNames: []*string{ptr("a.example")}, Emails: []*string{ptr("ops@example.com")},
				IPAddresses: []*string{ptr("10.1.2.3"), ptr("2001:db8::1")}, URIs: []*string{ptr("spiffe://cluster/ns/app")},
				UserPrincipalNames: []*string{ptr("svc@example.com")}}}}
	if _, err := certs.CreateCertificate(ctx, "policy", azcertificates.CreateCertificateParameters{CertificatePolicy: &pol}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := certs.GetCertificate(ctx, "policy", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(got.CER)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.DNSNames, []string{"a.example"}) || !slices.Equal(c.EmailAddresses, []string{"ops@example.com"}) ||
		len(c.IPAddresses) != 2 || len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://cluster/ns/app" {
		t.Errorf("SANs: dns %v email %v ip %v uri %v", c.DNSNames, c.EmailAddresses, c.IPAddresses, c.URIs)
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign {
		t.Errorf("key usage %b", c.KeyUsage)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageCodeSigning {
		t.Errorf("EKUs %v %v", c.ExtKeyUsage, c.UnknownExtKeyUsage)
	}
	p := got.Policy.X509CertificateProperties
	if p == nil || p.SubjectAlternativeNames == nil || len(p.SubjectAlternativeNames.UserPrincipalNames) != 1 ||
		*p.SubjectAlternativeNames.UserPrincipalNames[0] != "svc@example.com" || len(p.KeyUsage) != 2 || len(p.EnhancedKeyUsage) != 1 {
		t.Errorf("the policy does not report the certificate's names and usages: %+v", p)
	}

	pol.X509CertificateProperties.SubjectAlternativeNames.IPAddresses = []*string{ptr("not-an-ip")}
	if _, err := certs.CreateCertificate(ctx, "bad", azcertificates.CreateCertificateParameters{CertificatePolicy: &pol}, nil); err == nil ||
		!strings.Contains(err.Error(), "is not an IP address") {
		t.Errorf("an unusable SAN was not refused clearly: %v", err)
	}
}

// TestImportPreservesOrder: preserveCertOrder is kept and returned, and
// the backing secret keeps the imported order; the certificate's backing
// secret names its key with an absolute kid.
func TestImportPreservesOrder(t *testing.T) {
	ctx := context.Background()
	s, cred := fullAccess(t)
	certs, _ := azcertificates.NewClient(azsim.VaultURL("kv1"), cred, &azcertificates.ClientOptions{ClientOptions: noRetry(s)})
	key, leaf, inter, root := testChain(t)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	var bundle strings.Builder
	for _, c := range []*x509.Certificate{root, inter, leaf} {
		bundle.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	bundle.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	b := bundle.String()
	imp, err := certs.ImportCertificate(ctx, "ordered", azcertificates.ImportCertificateParameters{Base64EncodedCertificate: &b, PreserveCertOrder: ptr(true),
		CertificatePolicy: &azcertificates.CertificatePolicy{SecretProperties: &azcertificates.SecretProperties{ContentType: ptr("application/x-pem-file")}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if imp.PreserveCertOrder == nil || !*imp.PreserveCertOrder {
		t.Error("preserveCertOrder not returned")
	}
	sec, err := secretsClient(t, s, "kv1", cred).GetSecret(ctx, "ordered", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for rest := []byte(*sec.Value); ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			c, _ := x509.ParseCertificate(blk.Bytes)
			order = append(order, c.Subject.CommonName)
		}
	}
	if want := []string{root.Subject.CommonName, inter.Subject.CommonName, leaf.Subject.CommonName}; !slices.Equal(order, want) {
		t.Errorf("backing secret's certificates %v, want the imported order %v", order, want)
	}
	if sec.KID == nil || !strings.HasPrefix(string(*sec.KID), "https://kv1.") {
		t.Errorf("backing secret kid %v, want an absolute URL", sec.KID)
	}
}

// TestServiceRefusals: what the service refuses, azsim refuses, and what
// azsim does not model says so.
func TestServiceRefusals(t *testing.T) {
	s, cred := fullAccess(t)
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{azsim.VaultResource + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path string
		status       int
		want         string
	}{
		{"GET", "/secrets?api-version=7.4&maxresults=0", 400, "between 1 and 25"},
		{"GET", "/secrets?api-version=7.4&maxresults=26", 400, "between 1 and 25"},
		{"GET", "/secrets?api-version=7.9", 400, "is not recognized"},
		{"GET", "/secrets?api-version=7.6-preview.2", 200, ""},
		{"GET", "/certificates/contacts?api-version=7.4", 501, "does not support certificate contacts"},
		{"GET", "/certificates/issuers/my?api-version=7.4", 501, "does not support certificate issuers"},
		{"GET", "/keys/k1/rotationpolicy?api-version=7.4", 501, "key rotation policies"},
		{"PATCH", "/certificates/c1/pending?api-version=7.4", 501, "certificate operations"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, azsim.VaultURL("kv1")+tt.path, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s %s: %d %s, want %d containing %q", tt.method, tt.path, resp.StatusCode, body, tt.status, tt.want)
		}
	}
}
