package keyvault

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"strings"

	"kvmount.dev/kvmount/internal/azsim/store"
)

// b64url is how JWK byte fields travel: base64url without padding; the SDK
// refuses padding.
var b64url = base64.RawURLEncoding

// JWK is a JSON Web Key as Key Vault sends and accepts it.
type JWK struct {
	KID    string   `json:"kid,omitempty"`
	KTY    string   `json:"kty"`
	KeyOps []string `json:"key_ops,omitempty"`
	N      string   `json:"n,omitempty"`
	E      string   `json:"e,omitempty"`
	D      string   `json:"d,omitempty"`
	P      string   `json:"p,omitempty"`
	Q      string   `json:"q,omitempty"`
	DP     string   `json:"dp,omitempty"`
	DQ     string   `json:"dq,omitempty"`
	QI     string   `json:"qi,omitempty"`
	CRV    string   `json:"crv,omitempty"`
	X      string   `json:"x,omitempty"`
	Y      string   `json:"y,omitempty"`
	K      string   `json:"k,omitempty"`
}

type keyBundleJSON struct {
	Key        JWK               `json:"key"`
	Attributes Attributes        `json:"attributes"`
	Tags       map[string]string `json:"tags,omitempty"`
	Managed    bool              `json:"managed,omitempty"`
}

type keyItemJSON struct {
	KID        string            `json:"kid"`
	Attributes Attributes        `json:"attributes"`
	Tags       map[string]string `json:"tags,omitempty"`
	Managed    bool              `json:"managed,omitempty"`
}

func keyID(base string, k store.Key, withVersion bool) string {
	id := base + "/keys/" + k.Name
	if withVersion {
		id += "/" + k.Version
	}
	return id
}

// keyBundle is the GET answer: the public JWK only, never private parts.
func keyBundle(base string, k store.Key) (keyBundleJSON, error) {
	jwk, err := publicJWK(k)
	if err != nil {
		return keyBundleJSON{}, err
	}
	jwk.KID = keyID(base, k, true)
	return keyBundleJSON{Key: jwk, Attributes: toWire(k.Attributes), Tags: k.Tags, Managed: k.Managed}, nil
}

func keyItem(base string, k store.Key, withVersion bool) keyItemJSON {
	return keyItemJSON{KID: keyID(base, k, withVersion), Attributes: toWire(k.Attributes), Tags: k.Tags, Managed: k.Managed}
}

func publicJWK(k store.Key) (JWK, error) {
	jwk := JWK{KTY: k.KTY, KeyOps: k.Ops}
	if isOct(k.KTY) {
		return jwk, nil
	}
	priv, err := x509.ParsePKCS8PrivateKey(k.PKCS8)
	if err != nil {
		return jwk, fmt.Errorf("stored key %s/%s: %w", k.Name, k.Version, err)
	}
	switch key := priv.(type) {
	case *rsa.PrivateKey:
		jwk.N = b64url.EncodeToString(key.N.Bytes())
		jwk.E = b64url.EncodeToString(big.NewInt(int64(key.E)).Bytes())
	case *ecdsa.PrivateKey:
		pt, err := key.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			return jwk, fmt.Errorf("stored key %s/%s: %w", k.Name, k.Version, err)
		}
		size := (len(pt) - 1) / 2
		jwk.CRV = key.Curve.Params().Name
		jwk.X = b64url.EncodeToString(pt[1 : 1+size])
		jwk.Y = b64url.EncodeToString(pt[1+size:])
	}
	return jwk, nil
}

func isOct(kty string) bool { return kty == "oct" || kty == "oct-HSM" }

// CreateKeyParams is the body of a create-key request.
type CreateKeyParams struct {
	KTY        string            `json:"kty"`
	KeySize    int               `json:"key_size,omitempty"`
	Exponent   int               `json:"public_exponent,omitempty"`
	Curve      string            `json:"crv,omitempty"`
	KeyOps     []string          `json:"key_ops,omitempty"`
	Attributes *Attributes       `json:"attributes,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
}

func createKey(h *Handler, r *http.Request, v store.Vault, o op) (int, any, error) {
	var p CreateKeyParams
	if err := decodeBody(r, &p); err != nil {
		return 0, nil, err
	}
	k, err := h.CreateKey(v.Name, o.name, p)
	if err != nil {
		return 0, nil, err
	}
	b, err := keyBundle("https://"+r.Host, k)
	return http.StatusOK, b, err
}

// CreateKey generates a new version of a key.
func (h *Handler) CreateKey(vault, name string, p CreateKeyParams) (store.Key, error) {
	priv, octets, err := generateKey(p)
	if err != nil {
		return store.Key{}, err
	}
	return h.saveKey(vault, name, p.KTY, p.KeyOps, priv, octets, p.Attributes, p.Tags, false)
}

func generateKey(p CreateKeyParams) (crypto.Signer, []byte, error) {
	switch p.KTY {
	case "RSA", "RSA-HSM":
		size := p.KeySize
		if size == 0 {
			size = 2048
		}
		if size != 2048 && size != 3072 && size != 4096 {
			return nil, nil, errBadParameter("Invalid key size %d for kty %s: use 2048, 3072 or 4096.", size, p.KTY)
		}
		if p.Exponent != 0 && p.Exponent != 65537 {
			return nil, nil, errBadParameter("Invalid public exponent %d: only 65537 is supported.", p.Exponent)
		}
		k, err := rsa.GenerateKey(rand.Reader, size)
		return k, nil, err
	case "EC", "EC-HSM":
		curve, err := curveByName(p.Curve)
		if err != nil {
			return nil, nil, err
		}
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		return k, nil, err
	case "oct", "oct-HSM":
		size := p.KeySize
		if size == 0 {
			size = 256
		}
		if size != 128 && size != 192 && size != 256 {
			return nil, nil, errBadParameter("Invalid key size %d for kty %s: use 128, 192 or 256.", size, p.KTY)
		}
		b := make([]byte, size/8)
		_, err := rand.Read(b)
		return nil, b, err
	}
	return nil, nil, errBadParameter("Invalid kty %q: use RSA, RSA-HSM, EC, EC-HSM, oct or oct-HSM.", p.KTY)
}

func curveByName(name string) (elliptic.Curve, error) {
	switch name {
	case "", "P-256":
		return elliptic.P256(), nil
	case "P-384":
		return elliptic.P384(), nil
	case "P-521":
		return elliptic.P521(), nil
	}
	return nil, errBadParameter("Invalid curve %q: use P-256, P-384 or P-521.", name)
}

// ImportKeyParams is the body of an import-key request.
type ImportKeyParams struct {
	Key        JWK               `json:"key"`
	HSM        bool              `json:"Hsm,omitempty"`
	Attributes *Attributes       `json:"attributes,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
}

func importKey(h *Handler, r *http.Request, v store.Vault, o op) (int, any, error) {
	var p ImportKeyParams
	if err := decodeBody(r, &p); err != nil {
		return 0, nil, err
	}
	k, err := h.ImportKey(v.Name, o.name, p)
	if err != nil {
		return 0, nil, err
	}
	b, err := keyBundle("https://"+r.Host, k)
	return http.StatusOK, b, err
}

// ImportKey stores a new version of a key from a private JWK.
func (h *Handler) ImportKey(vault, name string, p ImportKeyParams) (store.Key, error) {
	priv, octets, err := privateFromJWK(p.Key)
	if err != nil {
		return store.Key{}, err
	}
	kty := strings.TrimSuffix(p.Key.KTY, "-HSM")
	if p.HSM {
		kty += "-HSM"
	}
	return h.saveKey(vault, name, kty, p.Key.KeyOps, priv, octets, p.Attributes, p.Tags, false)
}

func (h *Handler) saveKey(vault, name, kty string, ops []string, priv crypto.Signer, octets []byte, attrs *Attributes, tags map[string]string, managed bool) (store.Key, error) {
	if !nameRE.MatchString(name) {
		return store.Key{}, errBadParameter("The request URI contains an invalid name: %s", name)
	}
	if err := checkTags(tags); err != nil {
		return store.Key{}, err
	}
	if len(ops) == 0 {
		ops = defaultOps(kty)
	}
	now := h.cfg.Now().UTC()
	k := store.Key{Vault: strings.ToLower(vault), Name: name, KTY: kty, Ops: ops, Octets: octets,
		Attributes: newAttributes(now), Tags: tags, Managed: managed}
	attrs.apply(&k.Attributes, now)
	if priv != nil {
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return store.Key{}, errBadParameter("The key cannot be stored: %v", err)
		}
		k.PKCS8 = der
	}
	err := h.cfg.DB.Update(func(tx *store.Tx) error {
		return putVersion(tx, &k.Seq, &k.Version, func() error {
			return store.Put(tx, store.BucketKeys, store.ObjectKey(vault, name, k.Version), k)
		})
	})
	if err == nil && !managed {
		h.changed(vault, kindKeys, name, k.Version, k.Attributes)
	}
	return k, err
}

func defaultOps(kty string) []string {
	switch strings.TrimSuffix(kty, "-HSM") {
	case "EC":
		return []string{"sign", "verify"}
	case "oct":
		return []string{"encrypt", "decrypt", "wrapKey", "unwrapKey"}
	}
	return []string{"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"}
}

// privateFromJWK decodes an imported JWK, refusing one without its private
// part.
func privateFromJWK(j JWK) (crypto.Signer, []byte, error) {
	dec := func(field, s string) (*big.Int, error) {
		b, err := b64url.DecodeString(strings.TrimRight(s, "="))
		if err != nil || len(b) == 0 {
			return nil, errBadParameter("JWK property %q is missing or not base64url.", field)
		}
		return new(big.Int).SetBytes(b), nil
	}
	switch strings.TrimSuffix(j.KTY, "-HSM") {
	case "RSA":
		return rsaFromJWK(j, dec)
	case "EC":
		return ecFromJWK(j, dec)
	case "oct":
		k, err := b64url.DecodeString(strings.TrimRight(j.K, "="))
		if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			return nil, nil, errBadParameter("JWK property \"k\" must be a base64url 128, 192 or 256-bit key.")
		}
		return nil, k, nil
	}
	return nil, nil, errBadParameter("Invalid kty %q in the imported key: use RSA, EC or oct.", j.KTY)
}

func rsaFromJWK(j JWK, dec func(string, string) (*big.Int, error)) (crypto.Signer, []byte, error) {
	vals := map[string]*big.Int{}
	for _, f := range []struct{ name, v string }{{"n", j.N}, {"e", j.E}, {"d", j.D}, {"p", j.P}, {"q", j.Q}} {
		x, err := dec(f.name, f.v)
		if err != nil {
			return nil, nil, err
		}
		vals[f.name] = x
	}
	if !vals["e"].IsInt64() || vals["e"].Int64() > 1<<31 {
		return nil, nil, errBadParameter("JWK property \"e\" is out of range.")
	}
	k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: vals["n"], E: int(vals["e"].Int64())}, D: vals["d"], Primes: []*big.Int{vals["p"], vals["q"]}}
	if k.N.BitLen() < 2048 {
		return nil, nil, errBadParameter("RSA keys must be at least 2048 bits; this one has %d.", k.N.BitLen())
	}
	if err := k.Validate(); err != nil {
		return nil, nil, errBadParameter("The RSA key is not valid: its parts do not agree.")
	}
	k.Precompute()
	return k, nil, nil
}

func ecFromJWK(j JWK, dec func(string, string) (*big.Int, error)) (crypto.Signer, []byte, error) {
	curve, err := curveByName(j.CRV)
	if err != nil || j.CRV == "" {
		return nil, nil, errBadParameter("Invalid crv %q: use P-256, P-384 or P-521.", j.CRV)
	}
	size := (curve.Params().BitSize + 7) / 8
	d, err := dec("d", j.D)
	if err != nil {
		return nil, nil, err
	}
	jx, err1 := dec("x", j.X)
	jy, err2 := dec("y", j.Y)
	if err1 != nil || err2 != nil || d.BitLen() > 8*size || jx.BitLen() > 8*size || jy.BitLen() > 8*size {
		return nil, nil, errBadParameter("The EC key is not valid: d, x or y is missing or too long for %s.", j.CRV)
	}
	key, err := ecdsa.ParseRawPrivateKey(curve, d.FillBytes(make([]byte, size)))
	if err != nil {
		return nil, nil, errBadParameter("The EC key is not valid: d is out of range for %s.", j.CRV)
	}
	pub, err := key.PublicKey.Bytes()
	want := append([]byte{4}, append(jx.FillBytes(make([]byte, size)), jy.FillBytes(make([]byte, size))...)...)
	if err != nil || string(pub) != string(want) {
		return nil, nil, errBadParameter("The EC key is not valid: x and y do not match d.")
	}
	return key, nil, nil
}

// ImportKeyPEM stores a new version of a key from a PEM private key
// (PKCS#8, PKCS#1 or SEC 1), as `az keyvault key import --pem-file` does.
func (h *Handler) ImportKeyPEM(vault, name string, data []byte, ops []string) (store.Key, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return store.Key{}, errBadParameter("The PEM file holds no PEM block.")
	}
	priv, err := parsePrivateKey(block)
	if err != nil {
		return store.Key{}, err
	}
	kty, size := keyShape(priv)
	if kty == "RSA" && size < 2048 {
		return store.Key{}, errBadParameter("RSA keys must be at least 2048 bits; this one has %d.", size)
	}
	return h.saveKey(vault, name, kty, ops, priv, nil, nil, nil, false)
}
