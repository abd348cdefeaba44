// Package pki makes the small private CAs kvmount's local environment needs
// (the local cluster's and azsim's): a CA that is created once and reused from
// its directory, leaf certificates reissued only when their names change, and
// crash-safe file writes.
package pki

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

// CA is a private certificate authority kept in a directory.
type CA struct {
	cert *x509.Certificate
	key  crypto.Signer
	// CertPath is the PEM file clients trust.
	CertPath string
}

// Spec says what one leaf certificate is for.
type Spec struct {
	CommonName string
	Orgs       []string
	DNSNames   []string
	IPs        []net.IP
	Server     bool
	Client     bool
}

// LoadOrCreateCA reuses the CA under dir (ca.crt, ca.key) when it is there
// and valid, so that a second start in the same dir keeps every issued
// certificate and kubeconfig working; otherwise it creates one named name.
func LoadOrCreateCA(dir, name string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if ca, err := loadPair(certPath, keyPath); err == nil && time.Until(ca.cert.NotAfter) > 24*time.Hour {
		return &CA{cert: ca.cert, key: ca.key, CertPath: certPath}, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: name},
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
	return &CA{cert: cert, key: key, CertPath: certPath}, nil
}

// Issue writes a certificate and key signed by the CA to <dir>/<name>.{crt,key}
// and returns their paths. An existing pair signed by this CA with the same
// names is reused.
func (ca *CA) Issue(dir, name string, spec Spec) (certPath, keyPath string, err error) {
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
		Subject:      pkix.Name{CommonName: spec.CommonName, Organization: spec.Orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     spec.DNSNames,
		IPAddresses:  spec.IPs,
	}
	if spec.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if spec.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return "", "", fmt.Errorf("sign certificate %s: %w", name, err)
	}
	return certPath, keyPath, writePair(certPath, keyPath, der, key)
}

func (ca *CA) signed(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(ca.cert) == nil && time.Until(c.NotAfter) > 24*time.Hour
}

func sameNames(c *x509.Certificate, spec Spec) bool {
	if c.Subject.CommonName != spec.CommonName || len(c.DNSNames) != len(spec.DNSNames) || len(c.IPAddresses) != len(spec.IPs) {
		return false
	}
	for i, ip := range spec.IPs {
		if !c.IPAddresses[i].Equal(ip) {
			return false
		}
	}
	return true
}

// RSAKey returns the path of an RSA key kept at path, creating it once.
// The local cluster signs service-account tokens with one: OIDC verifiers
// (azsim's federated credential check, Entra ID) expect RS256.
func RSAKey(path string) (string, error) {
	if data, err := os.ReadFile(path); err == nil {
		if block, _ := pem.Decode(data); block != nil {
			if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
				return path, nil
			}
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", fmt.Errorf("generate RSA key %s: %w", path, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("encode RSA key %s: %w", path, err)
	}
	return path, WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
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
	if err := WriteFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		// crypto/rand does not fail on Linux; a fixed serial would still be valid.
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// WriteFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path, so a crash never leaves a truncated key or config.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
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
