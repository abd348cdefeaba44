package keyvault

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"kvmount.dev/kvmount/internal/azure/config"
)

// The content types of a certificate's backing secret.
const (
	contentPFX = "application/x-pkcs12"
	contentPEM = "application/x-pem-file"
)

// FormatError is an object Key Vault returned that cannot be written the
// way the class asks. Its message never contains the object's bytes.
type FormatError struct {
	Object config.Object
	Msg    string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Object.Type, e.Object.Name, e.Msg)
}

// raw is one object version as Key Vault returned it.
type raw struct {
	Version string
	// Secret fields.
	Value       string
	ContentType string
	KID         string
	// Key fields: the public JWK.
	KTY, Curve string
	N, E, X, Y []byte
	// Certificate field: the leaf's DER.
	CER []byte
}

// rendered is an object version's file contents, plus the PEM parts of a
// certificate-backed secret for --write-cert-and-key-in-separate-files.
type rendered struct {
	main      []byte
	cert, key []byte
	hasParts  bool
}

// order says how certificate chains are written.
type order struct {
	// keepPFX writes a PFX-backed secret's chain as stored instead of
	// leaf → intermediates → root (--construct-pem-chain=false).
	keepPFX bool
	// pem rebuilds a PEM-backed secret (key, then chain leaf → root);
	// by default it is written as stored, as upstream does.
	pem bool
}

// render turns a fetched version into file contents.
func render(o config.Object, r raw, ord order) (rendered, error) {
	switch o.Type {
	case config.TypeKey:
		b, err := publicKeyPEM(r)
		if err != nil {
			return rendered{}, &FormatError{Object: o, Msg: err.Error()}
		}
		return rendered{main: b}, nil
	case config.TypeCert:
		return rendered{main: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.CER})}, nil
	}
	if r.KID == "" {
		b, err := decode(o, []byte(r.Value))
		return rendered{main: b}, err
	}
	if r.ContentType == contentPEM && !ord.pem {
		return renderPEMAsStored(o, r)
	}
	return renderCertSecret(o, r, ord.keepPFX)
}

// renderPEMAsStored writes a PEM-backed certificate secret byte for byte
// as Key Vault stores it, as upstream does; its parts for separate files
// are its CERTIFICATE blocks and its other blocks, in stored order.
func renderPEMAsStored(o config.Object, r raw) (rendered, error) {
	main, err := decode(o, []byte(r.Value))
	if err != nil {
		return rendered{}, err
	}
	var cert, key []byte
	for rest := []byte(r.Value); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			cert = append(cert, pem.EncodeToMemory(b)...)
		} else {
			key = append(key, pem.EncodeToMemory(b)...)
		}
	}
	if len(cert) == 0 {
		return rendered{}, &FormatError{Object: o, Msg: "the certificate's PEM secret holds no certificate"}
	}
	return rendered{main: main, cert: cert, key: key, hasParts: true}, nil
}

// decode applies objectEncoding to a secret's value.
func decode(o config.Object, v []byte) ([]byte, error) {
	switch o.Encoding {
	case config.EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(string(v))
		if err != nil {
			return nil, &FormatError{Object: o, Msg: "objectEncoding is base64 but the value is not standard base64: fix the secret or remove objectEncoding"}
		}
		return b, nil
	case config.EncodingHex:
		b, err := hex.DecodeString(string(v))
		if err != nil {
			return nil, &FormatError{Object: o, Msg: "objectEncoding is hex but the value is not hexadecimal: fix the secret or remove objectEncoding"}
		}
		return b, nil
	}
	return v, nil
}

// renderCertSecret writes a certificate's backing secret: the PFX as
// stored for objectFormat pfx, else PEM with the private key first, then
// the chain from leaf to root (or as stored, with keepOrder). A PEM-backed
// secret comes here only when asked to be rebuilt (order.pem).
func renderCertSecret(o config.Object, r raw, keepOrder bool) (rendered, error) {
	var key crypto.PrivateKey
	var certs []*x509.Certificate
	var err error
	switch r.ContentType {
	case contentPFX:
		if o.Format == config.FormatPFX {
			b, err := decode(o, []byte(r.Value))
			out := rendered{main: b}
			if err == nil {
				key, certs, err = readPFX(r.Value)
				out.cert, out.key = chainPEM(certs), keyPEM(key)
				out.hasParts = true
			}
			return out, wrapFormat(o, err)
		}
		key, certs, err = readPFX(r.Value)
	case contentPEM:
		key, certs, err = readPEM([]byte(r.Value))
	default:
		return rendered{}, &FormatError{Object: o, Msg: fmt.Sprintf("the certificate's secret has content type %q; Key Vault writes %s or %s", r.ContentType, contentPFX, contentPEM)}
	}
	if err != nil {
		return rendered{}, wrapFormat(o, err)
	}
	if !keepOrder {
		certs = OrderChain(key, certs)
	}
	kp, cp := keyPEM(key), chainPEM(certs)
	main, err := decode(o, append(append([]byte{}, kp...), cp...))
	return rendered{main: main, cert: cp, key: kp, hasParts: true}, err
}

func wrapFormat(o config.Object, err error) error {
	if err == nil {
		return nil
	}
	var fe *FormatError
	if errors.As(err, &fe) {
		return err
	}
	return &FormatError{Object: o, Msg: err.Error()}
}

// readPFX decodes a base64 PFX with the empty password Key Vault uses. The
// decoder reads modern (AES, SHA-256 MAC) and legacy PFX alike.
func readPFX(b64 string) (crypto.PrivateKey, []*x509.Certificate, error) {
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, nil, errors.New("the certificate's PKCS#12 secret is not base64")
	}
	key, leaf, chain, err := pkcs12.DecodeChain(data, "")
	if err != nil {
		return nil, nil, fmt.Errorf("the certificate's PKCS#12 secret cannot be decoded: %v", err)
	}
	return key, append([]*x509.Certificate{leaf}, chain...), nil
}

// readPEM takes the private key and certificates of a PEM bundle.
func readPEM(data []byte) (crypto.PrivateKey, []*x509.Certificate, error) {
	var key crypto.PrivateKey
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("a certificate in the PEM secret is invalid: %v", err)
			}
			certs = append(certs, c)
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			k, err := parseKey(b.Bytes)
			if err != nil {
				return nil, nil, err
			}
			key = k
		}
	}
	if len(certs) == 0 {
		return nil, nil, errors.New("the certificate's PEM secret holds no certificate")
	}
	return key, certs, nil
}

// parseKey reads PKCS#8, PKCS#1 or SEC 1 private keys.
func parseKey(der []byte) (crypto.PrivateKey, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("the private key in the certificate's secret is not PKCS#8, PKCS#1 or SEC 1")
}

// keyPEM writes a private key as PKCS#8 "PRIVATE KEY", as upstream does.
func keyPEM(key crypto.PrivateKey) []byte {
	if key == nil {
		return nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func chainPEM(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// OrderChain puts certificates in leaf → intermediates → root order by
// real links: each next certificate's subject is the previous one's issuer
// and its key verifies the previous one's signature. The leaf is the one
// matching the private key, else the one that issued no other. Certificates
// outside the chain follow it in their original order; a self-signed root
// ends the chain (no cycle).
func OrderChain(key crypto.PrivateKey, certs []*x509.Certificate) []*x509.Certificate {
	if len(certs) < 2 {
		return certs
	}
	used := make([]bool, len(certs))
	cur := leafIndex(key, certs)
	out := []*x509.Certificate{certs[cur]}
	used[cur] = true
	for {
		next := -1
		c := certs[cur]
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			break // self-signed root
		}
		for i, p := range certs {
			if !used[i] && bytes.Equal(p.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(p) == nil {
				next = i
				break
			}
		}
		if next < 0 {
			break
		}
		out, used[next], cur = append(out, certs[next]), true, next
	}
	for i, c := range certs {
		if !used[i] {
			out = append(out, c)
		}
	}
	return out
}

func leafIndex(key crypto.PrivateKey, certs []*x509.Certificate) int {
	if s, ok := key.(crypto.Signer); ok {
		for i, c := range certs {
			if pk, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pk.Equal(s.Public()) {
				return i
			}
		}
	}
	for i := range certs {
		if !issuesAnother(i, certs) {
			return i
		}
	}
	return 0
}

// issuesAnother reports whether certs[i] signed another certificate of certs.
func issuesAnother(i int, certs []*x509.Certificate) bool {
	for j, o := range certs {
		if i != j && bytes.Equal(o.RawIssuer, certs[i].RawSubject) && o.CheckSignatureFrom(certs[i]) == nil {
			return true
		}
	}
	return false
}

// publicKeyPEM turns a key's public JWK into a PKIX "PUBLIC KEY" PEM.
// Symmetric (oct) keys have no public part and Key Vault never exports
// their material, so they are refused with an explanation.
func publicKeyPEM(r raw) ([]byte, error) {
	var pub crypto.PublicKey
	switch strings.TrimSuffix(r.KTY, "-HSM") {
	case "RSA":
		if len(r.N) == 0 || len(r.E) == 0 || len(r.E) > 4 {
			return nil, errors.New("the key's JWK has no valid n and e")
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(r.N), E: int(new(big.Int).SetBytes(r.E).Int64())}
	case "EC":
		curve, err := curve(r.Curve)
		if err != nil {
			return nil, err
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(r.X) > size || len(r.Y) > size {
			return nil, errors.New("the key's JWK point does not fit its curve")
		}
		point := append([]byte{4}, append(leftPad(r.X, size), leftPad(r.Y, size)...)...)
		k, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("the key's JWK point is not on curve %s", r.Curve)
		}
		pub = k
	case "oct":
		return nil, errors.New("is a symmetric (oct) key: Key Vault never exports symmetric key material, so it cannot be mounted; mount a secret instead")
	default:
		return nil, fmt.Errorf("has key type %q, which cannot be written as a PEM public key", r.KTY)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func curve(name string) (elliptic.Curve, error) {
	switch name {
	case "P-256":
		return elliptic.P256(), nil
	case "P-384":
		return elliptic.P384(), nil
	case "P-521":
		return elliptic.P521(), nil
	}
	return nil, fmt.Errorf("uses curve %q; P-256, P-384 and P-521 are supported", name)
}

func leftPad(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	return append(make([]byte, n-len(b)), b...)
}
