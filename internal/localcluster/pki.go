package localcluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// certLifetime is long enough that a kept data dir never meets an expired
// certificate in practice, and short enough to stay a visibly local CA.
const certLifetime = 5 * 365 * 24 * time.Hour

// authority is the cluster's CA: it signs the API server's and kubelets'
// serving certificates and every client certificate.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
	// certPath is the PEM file clients trust.
	certPath string
}

// certSpec says what one leaf certificate is for.
type certSpec struct {
	commonName string
	orgs       []string
	dnsNames   []string
	ips        []net.IP
	server     bool
	client     bool
}

// loadOrCreateCA reuses the CA under dir when it is there and valid, so that a
// second start in the same dir keeps working kubeconfigs and etcd contents.
func loadOrCreateCA(dir string) (*authority, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if ca, err := loadPair(certPath, keyPath); err == nil && time.Until(ca.cert.NotAfter) > 24*time.Hour {
		return &authority{cert: ca.cert, key: ca.key, certPath: certPath}, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: "kvmount local cluster CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(certLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key, certPath: certPath}, nil
}

// issue writes a certificate and key signed by the CA to <dir>/<name>.{crt,key}
// and returns their paths. An existing pair signed by this CA with the same
// names is reused.
func (ca *authority) issue(dir, name string, spec certSpec) (certPath, keyPath string, err error) {
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if p, err := loadPair(certPath, keyPath); err == nil && ca.signed(p.cert) && sameNames(p.cert, spec) {
		return certPath, keyPath, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate key for %s: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: spec.commonName, Organization: spec.orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     spec.dnsNames,
		IPAddresses:  spec.ips,
	}
	if spec.server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if spec.client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return "", "", fmt.Errorf("sign certificate %s: %w", name, err)
	}
	return certPath, keyPath, writePair(certPath, keyPath, der, key)
}

func (ca *authority) signed(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(ca.cert) == nil && time.Until(c.NotAfter) > 24*time.Hour
}

func sameNames(c *x509.Certificate, spec certSpec) bool {
	if c.Subject.CommonName != spec.commonName || len(c.DNSNames) != len(spec.dnsNames) || len(c.IPAddresses) != len(spec.ips) {
		return false
	}
	for i, ip := range spec.ips {
		if !c.IPAddresses[i].Equal(ip) {
			return false
		}
	}
	return true
}

// serviceAccountKey returns the path of the RSA key the API server signs
// service-account tokens with. RSA because OIDC verifiers (azsim's federated
// credential check, Entra ID) expect RS256 in the issuer's JWKS.
func serviceAccountKey(dir string) (string, error) {
	path := filepath.Join(dir, "sa.key")
	if data, err := os.ReadFile(path); err == nil {
		if block, _ := pem.Decode(data); block != nil {
			if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
				return path, nil
			}
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", fmt.Errorf("generate service-account key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("encode service-account key: %w", err)
	}
	return path, writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

type pair struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func loadPair(certPath, keyPath string) (pair, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return pair{}, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return pair{}, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return pair{}, errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return pair{}, err
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return pair{}, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return pair{}, errors.New("key cannot sign")
	}
	return pair{cert: cert, key: signer}, nil
}

func writePair(certPath, keyPath string, der []byte, key crypto.Signer) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key %s: %w", keyPath, err)
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		// crypto/rand does not fail on Linux; a fixed serial would still be valid.
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path, so a crash never leaves a truncated key or config.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	return nil
}
