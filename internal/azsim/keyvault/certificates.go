package keyvault

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"kvmount.dev/kvmount/internal/azsim/store"
)

// The two content types of a certificate's backing secret.
const (
	contentPFX = "application/x-pkcs12"
	contentPEM = "application/x-pem-file"
)

// CertPolicy is the subset of a certificate policy azsim honours.
type CertPolicy struct {
	KeyProps *struct {
		Exportable *bool  `json:"exportable,omitempty"`
		KTY        string `json:"kty,omitempty"`
		KeySize    int    `json:"key_size,omitempty"`
		Curve      string `json:"crv,omitempty"`
		ReuseKey   bool   `json:"reuse_key,omitempty"`
	} `json:"key_props,omitempty"`
	SecretProps *struct {
		ContentType string `json:"contentType,omitempty"`
	} `json:"secret_props,omitempty"`
	X509Props *struct {
		Subject        string   `json:"subject,omitempty"`
		ValidityMonths int      `json:"validity_months,omitempty"`
		SANs           *SANs    `json:"sans,omitempty"`
		KeyUsage       []string `json:"key_usage,omitempty"`
		EKUs           []string `json:"ekus,omitempty"`
	} `json:"x509_props,omitempty"`
	Issuer *struct {
		Name string `json:"name,omitempty"`
	} `json:"issuer,omitempty"`
}

// ImportCertParams is the body of an import-certificate request.
type ImportCertParams struct {
	Value    string `json:"value"`
	Password string `json:"pwd,omitempty"`
	// PreserveCertOrder keeps the chain in the imported order; by default
	// the leaf comes first, as in the service.
	PreserveCertOrder bool              `json:"preserveCertOrder,omitempty"`
	Policy            *CertPolicy       `json:"policy,omitempty"`
	Attributes        *Attributes       `json:"attributes,omitempty"`
	Tags              map[string]string `json:"tags,omitempty"`
}

// CreateCertParams is the body of a create-certificate request.
type CreateCertParams struct {
	Policy     *CertPolicy       `json:"policy"`
	Attributes *Attributes       `json:"attributes,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
}

func certID(base string, c store.Certificate, withVersion bool) string {
	id := base + "/certificates/" + c.Name
	if withVersion {
		id += "/" + c.Version
	}
	return id
}

func thumbprint(der []byte) string {
	sum := sha1.Sum(der)
	return b64url.EncodeToString(sum[:])
}

func certBundle(base string, c store.Certificate) map[string]any {
	attrs := toWire(c.Attributes)
	if leaf, err := x509.ParseCertificate(c.Leaf); err == nil {
		nbf, exp := leaf.NotBefore.Unix(), leaf.NotAfter.Unix()
		attrs.NBF, attrs.EXP = &nbf, &exp
	}
	return map[string]any{
		"id":                certID(base, c, true),
		"kid":               base + "/keys/" + c.Name + "/" + c.Version,
		"sid":               base + "/secrets/" + c.Name + "/" + c.Version,
		"x5t":               thumbprint(c.Leaf),
		"cer":               base64.StdEncoding.EncodeToString(c.Leaf),
		"attributes":        attrs,
		"tags":              c.Tags,
		"preserveCertOrder": c.PreserveCertOrder,
		"policy": map[string]any{
			"id":           base + "/certificates/" + c.Name + "/policy",
			"key_props":    map[string]any{"exportable": c.Exportable, "kty": c.KeyType, "key_size": c.KeySize, "reuse_key": false},
			"secret_props": map[string]any{"contentType": c.ContentType},
			"x509_props":   x509PropsOf(c),
			"issuer":       map[string]any{"name": c.Issuer},
			"attributes":   map[string]any{"enabled": true, "created": c.Attributes.Created.Unix(), "updated": c.Attributes.Updated.Unix()},
		},
	}
}

func x509PropsOf(c store.Certificate) map[string]any {
	leaf, err := x509.ParseCertificate(c.Leaf)
	if err != nil {
		return map[string]any{"subject": c.Subject, "validity_months": c.Validity}
	}
	return x509Props(leaf, c.Validity)
}

func certItem(base string, c store.Certificate, withVersion bool) map[string]any {
	return map[string]any{"id": certID(base, c, withVersion), "x5t": thumbprint(c.Leaf), "attributes": toWire(c.Attributes), "tags": c.Tags}
}

// getCertificateExtra answers GET …/pending (creation is immediate, so the
// operation is always completed) and GET …/policy.
func getCertificateExtra(sub string) func(h *Handler, r *http.Request, v store.Vault, o op) (int, any, error) {
	return func(h *Handler, r *http.Request, v store.Vault, o op) (int, any, error) {
		c, err := getEnabled[store.Certificate](h, kindCerts, v.Name, o.name, "")
		if err != nil {
			return 0, nil, err
		}
		base := "https://" + r.Host
		if sub == "policy" {
			return http.StatusOK, certBundle(base, c)["policy"], nil
		}
		return http.StatusOK, completedOperation(base, c), nil
	}
}

func completedOperation(base string, c store.Certificate) map[string]any {
	return map[string]any{"id": base + "/certificates/" + c.Name + "/pending", "issuer": map[string]string{"name": c.Issuer},
		"cancellation_requested": false, "status": "completed", "target": certID(base, c, false), "request_id": c.Version}
}

func importCertificate(h *Handler, r *http.Request, v store.Vault, o op) (int, any, error) {
	var p ImportCertParams
	if err := decodeBody(r, &p); err != nil {
		return 0, nil, err
	}
	c, err := h.ImportCertificate(v.Name, o.name, p)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, certBundle("https://"+r.Host, c), nil
}

func createCertificate(h *Handler, r *http.Request, v store.Vault, o op) (int, any, error) {
	var p CreateCertParams
	if err := decodeBody(r, &p); err != nil {
		return 0, nil, err
	}
	c, err := h.CreateCertificate(v.Name, o.name, p)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusAccepted, completedOperation("https://"+r.Host, c), nil
}

// material is a certificate's private key, leaf and chain; ordered, when
// set, is every certificate in the order to write them (preserveCertOrder).
type material struct {
	key     crypto.Signer
	leaf    *x509.Certificate
	chain   []*x509.Certificate
	ordered []*x509.Certificate
}

// ImportCertificate stores a new certificate version from a PFX (base64) or
// PEM bundle, with its backing key and secret.
func (h *Handler) ImportCertificate(vault, name string, p ImportCertParams) (store.Certificate, error) {
	var m material
	var err error
	contentType := contentPFX
	if strings.HasPrefix(strings.TrimSpace(p.Value), "-----BEGIN") {
		contentType = contentPEM
		m, err = parsePEMBundle([]byte(p.Value))
	} else {
		m, err = parsePFX(p.Value, p.Password)
	}
	if err != nil {
		return store.Certificate{}, err
	}
	if p.Policy != nil && p.Policy.SecretProps != nil && p.Policy.SecretProps.ContentType != "" {
		contentType = p.Policy.SecretProps.ContentType
	}
	if !p.PreserveCertOrder {
		m.ordered = nil
	}
	return h.saveCertificate(vault, name, m, contentType, "Unknown", 0, p.Attributes, p.Tags)
}

// CreateCertificate issues a self-signed certificate from a policy.
func (h *Handler) CreateCertificate(vault, name string, p CreateCertParams) (store.Certificate, error) {
	pol := p.Policy
	if pol == nil || pol.X509Props == nil || pol.X509Props.Subject == "" {
		return store.Certificate{}, errBadParameter("Property policy.x509_props.subject is required.")
	}
	if pol.Issuer != nil && pol.Issuer.Name != "" && !strings.EqualFold(pol.Issuer.Name, "Self") {
		return store.Certificate{}, errBadParameter("Issuer %q is not supported by azsim: use \"Self\", or import a certificate signed elsewhere.", pol.Issuer.Name)
	}
	months := pol.X509Props.ValidityMonths
	if months == 0 {
		months = 12
	}
	if months < 1 || months > 120 {
		return store.Certificate{}, errBadParameter("validity_months %d is out of range 1-120.", months)
	}
	m, err := selfSigned(pol, months, h.cfg.Now())
	if err != nil {
		return store.Certificate{}, err
	}
	contentType := contentPFX
	if pol.SecretProps != nil && pol.SecretProps.ContentType != "" {
		contentType = pol.SecretProps.ContentType
	}
	return h.saveCertificate(vault, name, m, contentType, "Self", months, p.Attributes, p.Tags)
}

func selfSigned(pol *CertPolicy, months int, now time.Time) (material, error) {
	kp := CreateKeyParams{KTY: "RSA"}
	if pol.KeyProps != nil {
		kp = CreateKeyParams{KTY: pol.KeyProps.KTY, KeySize: pol.KeyProps.KeySize, Curve: pol.KeyProps.Curve}
		if kp.KTY == "" {
			kp.KTY = "RSA"
		}
	}
	if isOct(kp.KTY) {
		return material{}, errBadParameter("A certificate key must be RSA or EC, not %s.", kp.KTY)
	}
	key, _, err := generateKey(kp)
	if err != nil {
		return material{}, err
	}
	subject, err := parseSubject(pol.X509Props.Subject)
	if err != nil {
		return material{}, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: subject, NotBefore: now.Add(-5 * time.Minute), NotAfter: now.AddDate(0, months, 0)}
	if err := applyX509Props(tmpl, pol.X509Props.KeyUsage, pol.X509Props.EKUs, pol.X509Props.SANs); err != nil {
		return material{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return material{}, fmt.Errorf("self-sign %s: %w", pol.X509Props.Subject, err)
	}
	leaf, err := x509.ParseCertificate(der)
	return material{key: key, leaf: leaf}, err
}

// parseSubject reads "CN=a, O=b" style subjects.
func parseSubject(s string) (pkix.Name, error) {
	var n pkix.Name
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return n, errBadParameter("Invalid subject %q: use the form CN=name[, O=org].", s)
		}
		switch strings.ToUpper(k) {
		case "CN":
			n.CommonName = v
		case "O":
			n.Organization = append(n.Organization, v)
		case "OU":
			n.OrganizationalUnit = append(n.OrganizationalUnit, v)
		case "C":
			n.Country = append(n.Country, v)
		case "L":
			n.Locality = append(n.Locality, v)
		case "ST", "S":
			n.Province = append(n.Province, v)
		default:
			return n, errBadParameter("Invalid subject %q: attribute %s is not supported.", s, k)
		}
	}
	return n, nil
}

func parsePFX(value, password string) (material, error) {
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
	if err != nil {
		return material{}, errBadParameter("The certificate value is neither PEM nor base64-encoded PFX.")
	}
	key, leaf, chain, err := pkcs12.DecodeChain(data, password)
	if err != nil {
		return material{}, errBadParameter("The PFX could not be read (wrong password or corrupt file): %v", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return material{}, errBadParameter("The PFX's private key type %T is not supported.", key)
	}
	return material{key: signer, leaf: leaf, chain: chain}, nil
}

func parsePEMBundle(data []byte) (material, error) {
	var m material
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		switch block.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return m, errBadParameter("A certificate in the PEM is not valid: %v", err)
			}
			certs = append(certs, c)
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			k, err := parsePrivateKey(block)
			if err != nil {
				return m, err
			}
			m.key = k
		}
	}
	if m.key == nil || len(certs) == 0 {
		return m, errBadParameter("The PEM must hold a private key and at least one certificate.")
	}
	for i, c := range certs {
		if samePublicKey(c.PublicKey, m.key.Public()) {
			m.leaf = c
			m.chain = append(append([]*x509.Certificate{}, certs[:i]...), certs[i+1:]...)
			m.ordered = certs
			return m, nil
		}
	}
	return m, errBadParameter("No certificate in the PEM matches its private key.")
}

func parsePrivateKey(block *pem.Block) (crypto.Signer, error) {
	var k any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, errBadParameter("The private key in the PEM is not valid: %v", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errBadParameter("The private key type %T is not supported.", k)
	}
	return s, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// saveCertificate writes the certificate, its backing key and its backing
// secret as one version, in one transaction.
func (h *Handler) saveCertificate(vault, name string, m material, contentType, issuer string, months int, attrs *Attributes, tags map[string]string) (store.Certificate, error) {
	if !nameRE.MatchString(name) {
		return store.Certificate{}, errBadParameter("The request URI contains an invalid name: %s", name)
	}
	if contentType != contentPFX && contentType != contentPEM {
		return store.Certificate{}, errBadParameter("secret_props.contentType %q is not valid: use %s or %s.", contentType, contentPFX, contentPEM)
	}
	value, err := secretValue(m, contentType)
	if err != nil {
		return store.Certificate{}, err
	}
	kty, size := keyShape(m.key)
	now := h.cfg.Now().UTC()
	c := store.Certificate{Vault: strings.ToLower(vault), Name: name, Leaf: m.leaf.Raw, ContentType: contentType, Issuer: issuer,
		Subject: m.leaf.Subject.String(), Validity: months, KeyType: kty, KeySize: size, Exportable: true,
		Attributes: newAttributes(now), Tags: tags, PreserveCertOrder: m.ordered != nil}
	for _, ch := range m.chain {
		c.Chain = append(c.Chain, ch.Raw)
	}
	attrs.apply(&c.Attributes, now)
	keyDER, err := x509.MarshalPKCS8PrivateKey(m.key)
	if err != nil {
		return c, errBadParameter("The certificate's key cannot be stored: %v", err)
	}
	err = h.cfg.DB.Update(func(tx *store.Tx) error {
		return putVersion(tx, &c.Seq, &c.Version, func() error {
			k := store.Key{Vault: c.Vault, Name: name, Version: c.Version, Seq: c.Seq, KTY: kty, Ops: defaultOps(kty),
				PKCS8: keyDER, Attributes: c.Attributes, Managed: true}
			s := store.Secret{Vault: c.Vault, Name: name, Version: c.Version, Seq: c.Seq, Value: value, ContentType: contentType,
				Attributes: c.Attributes, Managed: true, KID: "/keys/" + name + "/" + c.Version}
			key := store.ObjectKey(vault, name, c.Version)
			if err := store.Put(tx, store.BucketKeys, key, k); err != nil {
				return err
			}
			if err := store.Put(tx, store.BucketSecrets, key, s); err != nil {
				return err
			}
			return store.Put(tx, store.BucketCerts, key, c)
		})
	})
	if err == nil {
		h.changed(vault, kindCerts, name, c.Version, c.Attributes)
	}
	return c, err
}

func keyShape(k crypto.Signer) (string, int) {
	switch pub := k.Public().(type) {
	case *rsa.PublicKey:
		return "RSA", pub.N.BitLen()
	case *ecdsa.PublicKey:
		return "EC", pub.Curve.Params().BitSize
	}
	return "unknown", 0
}

// secretValue renders the backing secret: a PFX with an empty password,
// encrypted with the legacy 3DES/SHA-1 scheme every PKCS#12 decoder reads
// (x/crypto/pkcs12 included), or PEM with the PKCS#8 key first, then the
// leaf, then the chain.
func secretValue(m material, contentType string) (string, error) {
	if contentType == contentPFX {
		pfx, err := pkcs12.LegacyDES.Encode(m.key, m.leaf, m.chain, "")
		if err != nil {
			return "", fmt.Errorf("encode PFX: %w", err)
		}
		return base64.StdEncoding.EncodeToString(pfx), nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(m.key)
	if err != nil {
		return "", fmt.Errorf("encode key: %w", err)
	}
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	certs := append([]*x509.Certificate{m.leaf}, m.chain...)
	if m.ordered != nil {
		certs = m.ordered
	}
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.String(), nil
}

// pfxToPEM converts a stored PFX secret for ?outContentType.
func pfxToPEM(value string) (string, error) {
	m, err := parsePFX(value, "")
	if err != nil {
		return "", err
	}
	return secretValue(m, contentPEM)
}
