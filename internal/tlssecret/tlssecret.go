// Package tlssecret takes the two halves of a kubernetes.io/tls Secret —
// the certificate chain (tls.crt) and the private key (tls.key) — out of a
// file a provider returns, PEM or PKCS#12, as upstream's driver and sync
// controller do. Both kvmount's secretObjects sync and its SecretSync
// controller use it, so a class and a SecretSync make the same Secret.
package tlssecret

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// Part takes the certificate chain (tls.crt) or the private key
// (tls.key, as PKCS#1 for RSA and SEC 1 for EC, as upstream writes it) out
// of PEM or PKCS#12 content.
func Part(content []byte, key string) ([]byte, error) {
	blocks, err := pemBlocks(content)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, b := range blocks {
		switch {
		case key == corev1.TLSCertKey && b.Type == "CERTIFICATE":
			out = append(out, pem.EncodeToMemory(b)...)
		case key == corev1.TLSPrivateKeyKey && strings.HasSuffix(b.Type, "PRIVATE KEY"):
			k, err := traditionalKey(b)
			if err != nil {
				return nil, err
			}
			out = append(out, k...)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s found in the file", map[string]string{corev1.TLSCertKey: "certificate", corev1.TLSPrivateKeyKey: "private key"}[key])
	}
	return out, nil
}

func pemBlocks(content []byte) ([]*pem.Block, error) {
	var blocks []*pem.Block
	rest := content
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) > 0 {
		return blocks, nil
	}
	key, leaf, chain, err := pkcs12.DecodeChain(content, "")
	if err != nil {
		return nil, errors.New("the file is neither PEM nor a PKCS#12 archive with an empty password")
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	blocks = append(blocks, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for _, c := range append([]*x509.Certificate{leaf}, chain...) {
		blocks = append(blocks, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return blocks, nil
}

func traditionalKey(b *pem.Block) ([]byte, error) {
	if b.Type != "PRIVATE KEY" {
		return pem.EncodeToMemory(b), nil
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, errors.New("the private key is not valid PKCS#8")
	}
	return marshalTraditional(k)
}

// marshalTraditional writes RSA keys as PKCS#1 and EC keys as SEC 1, the
// encodings Kubernetes TLS Secrets traditionally hold; others stay PKCS#8.
func marshalTraditional(k any) ([]byte, error) {
	switch key := k.(type) {
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), nil
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
