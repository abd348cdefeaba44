package keyvault

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// SANs are a policy's subject alternative names, in the service's JSON.
type SANs struct {
	DNSNames    []string `json:"dns_names,omitempty"`
	Emails      []string `json:"emails,omitempty"`
	IPAddresses []string `json:"ipAddresses,omitempty"`
	URIs        []string `json:"uris,omitempty"`
	UPNs        []string `json:"upns,omitempty"`
}

// keyUsages are the service's key_usage names.
var keyUsages = map[string]x509.KeyUsage{
	"digitalSignature": x509.KeyUsageDigitalSignature, "nonRepudiation": x509.KeyUsageContentCommitment,
	"keyEncipherment": x509.KeyUsageKeyEncipherment, "dataEncipherment": x509.KeyUsageDataEncipherment,
	"keyAgreement": x509.KeyUsageKeyAgreement, "keyCertSign": x509.KeyUsageCertSign, "cRLSign": x509.KeyUsageCRLSign,
	"encipherOnly": x509.KeyUsageEncipherOnly, "decipherOnly": x509.KeyUsageDecipherOnly,
}

var (
	oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidUPN = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
)

// applyX509Props puts a policy's key usage, EKUs and SANs on a
// certificate template, or refuses what it cannot honour: azsim never
// answers 200 with a certificate other than the one asked for.
func applyX509Props(tmpl *x509.Certificate, keyUsage, ekus []string, sans *SANs) error {
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	if len(keyUsage) > 0 {
		tmpl.KeyUsage = 0
		for _, u := range keyUsage {
			ku, ok := keyUsages[u]
			if !ok {
				return errBadParameter("key_usage %q is not one of digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment, keyAgreement, keyCertSign, cRLSign, encipherOnly, decipherOnly.", u)
			}
			tmpl.KeyUsage |= ku
		}
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if len(ekus) > 0 {
		tmpl.ExtKeyUsage = nil
		for _, e := range ekus {
			oid, err := parseOID(e)
			if err != nil {
				return errBadParameter("ekus entry %q is not an object identifier (e.g. 1.3.6.1.5.5.7.3.1).", e)
			}
			tmpl.UnknownExtKeyUsage = append(tmpl.UnknownExtKeyUsage, oid)
		}
	}
	if sans == nil {
		return nil
	}
	return applySANs(tmpl, sans)
}

func applySANs(tmpl *x509.Certificate, s *SANs) error {
	tmpl.DNSNames, tmpl.EmailAddresses = s.DNSNames, s.Emails
	for _, ip := range s.IPAddresses {
		parsed := net.ParseIP(ip)
		if parsed == nil {
			return errBadParameter("sans.ipAddresses entry %q is not an IP address.", ip)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, parsed)
	}
	for _, u := range s.URIs {
		parsed, err := url.Parse(u)
		if err != nil || parsed.Scheme == "" {
			return errBadParameter("sans.uris entry %q is not an absolute URI.", u)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	if len(s.UPNs) == 0 {
		return nil
	}
	// Go writes no otherName SANs: with UPNs the whole extension is built
	// here, and the template's own SAN fields are left empty.
	ext, err := sanExtension(tmpl, s.UPNs)
	if err != nil {
		return err
	}
	tmpl.DNSNames, tmpl.EmailAddresses, tmpl.IPAddresses, tmpl.URIs = nil, nil, nil, nil
	tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
	return nil
}

// sanExtension is a SubjectAltName extension with the template's names
// and UPNs as otherName (1.3.6.1.4.1.311.20.2.3, a UTF8String).
func sanExtension(tmpl *x509.Certificate, upns []string) (pkix.Extension, error) {
	var names []asn1.RawValue
	for _, d := range tmpl.DNSNames {
		names = append(names, asn1.RawValue{Tag: 2, Class: asn1.ClassContextSpecific, Bytes: []byte(d)})
	}
	for _, e := range tmpl.EmailAddresses {
		names = append(names, asn1.RawValue{Tag: 1, Class: asn1.ClassContextSpecific, Bytes: []byte(e)})
	}
	for _, u := range tmpl.URIs {
		names = append(names, asn1.RawValue{Tag: 6, Class: asn1.ClassContextSpecific, Bytes: []byte(u.String())})
	}
	for _, ip := range tmpl.IPAddresses {
		b := ip.To4()
		if b == nil {
			b = ip
		}
		names = append(names, asn1.RawValue{Tag: 7, Class: asn1.ClassContextSpecific, Bytes: b})
	}
	for _, upn := range upns {
		value, err := asn1.MarshalWithParams(upn, "utf8")
		if err != nil {
			return pkix.Extension{}, err
		}
		other, err := asn1.Marshal(struct {
			TypeID asn1.ObjectIdentifier
			Value  asn1.RawValue // [0] EXPLICIT
		}{oidUPN, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: value}})
		if err != nil {
			return pkix.Extension{}, err
		}
		// otherName is [0] IMPLICIT: the SEQUENCE's tag becomes context 0.
		other[0] = 0xa0
		names = append(names, asn1.RawValue{FullBytes: other})
	}
	der, err := asn1.Marshal(names)
	return pkix.Extension{Id: oidSAN, Value: der}, err
}

// parseOID reads a dotted object identifier (1.3.6.1.5.5.7.3.1).
func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, errBadParameter("not an object identifier")
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || (i == 0 && n > 2) {
			return nil, errBadParameter("not an object identifier")
		}
		oid[i] = n
	}
	return oid, nil
}

// x509Props is the policy's x509_props as the service reports them: read
// from the certificate itself (subject, names, usages, EKUs).
func x509Props(leaf *x509.Certificate, months int) map[string]any {
	props := map[string]any{"subject": leaf.Subject.String(), "validity_months": months}
	var ku []string
	for name, bit := range keyUsages {
		if leaf.KeyUsage&bit != 0 {
			ku = append(ku, name)
		}
	}
	if len(ku) > 0 {
		slices.Sort(ku)
		props["key_usage"] = ku
	}
	var ekus []string
	for _, e := range leaf.ExtKeyUsage {
		if oid, ok := ekuOIDs[e]; ok {
			ekus = append(ekus, oid)
		}
	}
	for _, o := range leaf.UnknownExtKeyUsage {
		ekus = append(ekus, o.String())
	}
	if len(ekus) > 0 {
		props["ekus"] = ekus
	}
	if sans := sansOf(leaf); sans != nil {
		props["sans"] = sans
	}
	return props
}

var ekuOIDs = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageServerAuth: "1.3.6.1.5.5.7.3.1", x509.ExtKeyUsageClientAuth: "1.3.6.1.5.5.7.3.2",
	x509.ExtKeyUsageCodeSigning: "1.3.6.1.5.5.7.3.3", x509.ExtKeyUsageEmailProtection: "1.3.6.1.5.5.7.3.4",
	x509.ExtKeyUsageTimeStamping: "1.3.6.1.5.5.7.3.8", x509.ExtKeyUsageOCSPSigning: "1.3.6.1.5.5.7.3.9",
}

// sansOf reads every SAN kind the service models, UPNs included.
func sansOf(leaf *x509.Certificate) *SANs {
	s := &SANs{DNSNames: leaf.DNSNames, Emails: leaf.EmailAddresses, UPNs: upnsOf(leaf)}
	for _, ip := range leaf.IPAddresses {
		s.IPAddresses = append(s.IPAddresses, ip.String())
	}
	for _, u := range leaf.URIs {
		s.URIs = append(s.URIs, u.String())
	}
	if len(s.DNSNames)+len(s.Emails)+len(s.IPAddresses)+len(s.URIs)+len(s.UPNs) == 0 {
		return nil
	}
	return s
}

func upnsOf(leaf *x509.Certificate) []string {
	var out []string
	for _, ext := range leaf.Extensions {
		if !ext.Id.Equal(oidSAN) {
			continue
		}
		var names []asn1.RawValue
		if _, err := asn1.Unmarshal(ext.Value, &names); err != nil {
			return nil
		}
		for _, n := range names {
			if n.Class != asn1.ClassContextSpecific || n.Tag != 0 {
				continue
			}
			var other struct {
				TypeID asn1.ObjectIdentifier
				Value  asn1.RawValue // [0] EXPLICIT
			}
			seq := append([]byte{0x30}, n.FullBytes[1:]...)
			if _, err := asn1.Unmarshal(seq, &other); err != nil || !other.TypeID.Equal(oidUPN) {
				continue
			}
			var upn string
			if _, err := asn1.UnmarshalWithParams(other.Value.Bytes, &upn, "utf8"); err == nil {
				out = append(out, upn)
			}
		}
	}
	return out
}
