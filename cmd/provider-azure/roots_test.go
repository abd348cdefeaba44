package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"testing"
	"time"

	"kvmount.dev/kvmount/internal/httpclient"
	"kvmount.dev/kvmount/internal/pki"
)

// TestTrustsAzureWithoutSystemRoots checks that the provider verifies the
// certificate chain real Key Vault and Entra ID present when it runs where
// there is no CA bundle at all, as in its image (an empty base): the chain
// from Microsoft's public issuing CA must verify against the roots the
// provider's HTTP clients use, even with a --ca-file added. Without the
// embedded fallback roots it fails. The check runs in a child process,
// because Go loads the system roots once per process.
func TestTrustsAzureWithoutSystemRoots(t *testing.T) {
	if os.Getenv("KVMOUNT_ROOTS_CHILD") == "1" {
		verifyAzureChain(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTrustsAzureWithoutSystemRoots$", "-test.v")
	cmd.Env = append(os.Environ(), "KVMOUNT_ROOTS_CHILD=1", "SSL_CERT_FILE=/nonexistent", "SSL_CERT_DIR=/nonexistent")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("with no system CA bundle: %v\n%s", err, out)
	}
}

func verifyAzureChain(t *testing.T) {
	b, err := os.ReadFile("testdata/azure-issuing-ca-03.pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("testdata/azure-issuing-ca-03.pem holds no PEM block")
	}
	issuing, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := pki.LoadOrCreateCA(t.TempDir(), "a private CA given with --ca-file")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := httpclient.NewTransport(httpclient.Options{CAFiles: []string{extra.CertPath}})
	if err != nil {
		t.Fatal(err)
	}
	// A fixed time inside the intermediate's validity, so the test does
	// not expire with it.
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := issuing.Verify(x509.VerifyOptions{Roots: tr.TLSClientConfig.RootCAs, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("%s (issued by %s) does not verify against the provider's roots: %v", issuing.Subject.CommonName, issuing.Issuer.CommonName, err)
	}
}
