package keyvault

import (
	"fmt"
	"net/http"
	"strings"

	"kvmount.dev/kvmount/internal/azsim/store"
)

// maxSecretValue is the service's limit on a secret value.
const maxSecretValue = 25 * 1024

// SecretParams is the body of a set-secret request.
type SecretParams struct {
	Value       *string           `json:"value"`
	ContentType string            `json:"contentType,omitempty"`
	Attributes  *Attributes       `json:"attributes,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
}

type secretBundleJSON struct {
	Value       string            `json:"value"`
	ID          string            `json:"id"`
	ContentType string            `json:"contentType,omitempty"`
	Attributes  Attributes        `json:"attributes"`
	Tags        map[string]string `json:"tags,omitempty"`
	KID         string            `json:"kid,omitempty"`
	Managed     bool              `json:"managed,omitempty"`
}

type secretItemJSON struct {
	ID          string            `json:"id"`
	ContentType string            `json:"contentType,omitempty"`
	Attributes  Attributes        `json:"attributes"`
	Tags        map[string]string `json:"tags,omitempty"`
	Managed     bool              `json:"managed,omitempty"`
}

func secretID(base string, s store.Secret, withVersion bool) string {
	id := base + "/secrets/" + s.Name
	if withVersion {
		id += "/" + s.Version
	}
	return id
}

// secretBundle is the GET answer. outContentType asks for a
// certificate-backed secret in another format; only PFX to PEM is
// supported, as in the service.
func secretBundle(base string, s store.Secret, outContentType string) (secretBundleJSON, error) {
	kid := s.KID
	if strings.HasPrefix(kid, "/") { // stored relative to the vault, served absolute
		kid = base + kid
	}
	b := secretBundleJSON{Value: s.Value, ID: secretID(base, s, true), ContentType: s.ContentType,
		Attributes: toWire(s.Attributes), Tags: s.Tags, KID: kid, Managed: s.Managed}
	if outContentType == "" || outContentType == s.ContentType {
		return b, nil
	}
	if s.KID == "" || s.ContentType != contentPFX || outContentType != contentPEM {
		return b, errBadParameter("outContentType %q is not supported for this secret; only a certificate's %s secret can be returned as %s", outContentType, contentPFX, contentPEM)
	}
	pem, err := pfxToPEM(s.Value)
	if err != nil {
		return b, fmt.Errorf("convert backing secret of %s: %w", s.Name, err)
	}
	b.Value, b.ContentType = pem, contentPEM
	return b, nil
}

func secretItem(base string, s store.Secret, withVersion bool) secretItemJSON {
	return secretItemJSON{ID: secretID(base, s, withVersion), ContentType: s.ContentType,
		Attributes: toWire(s.Attributes), Tags: s.Tags, Managed: s.Managed}
}

func setSecret(h *Handler, r *http.Request, v store.Vault, o op) (int, any, error) {
	var p SecretParams
	if err := decodeBody(r, &p); err != nil {
		return 0, nil, err
	}
	s, err := h.SetSecret(v.Name, o.name, p)
	if err != nil {
		return 0, nil, err
	}
	b, err := secretBundle("https://"+r.Host, s, "")
	return http.StatusOK, b, err
}

// SetSecret stores a new version of a secret. A secret that backs a
// certificate cannot be set directly.
func (h *Handler) SetSecret(vault, name string, p SecretParams) (store.Secret, error) {
	if !nameRE.MatchString(name) {
		return store.Secret{}, errBadParameter("The request URI contains an invalid name: %s", name)
	}
	if p.Value == nil {
		return store.Secret{}, errBadParameter("Property 'value' is required.")
	}
	if len(*p.Value) > maxSecretValue {
		return store.Secret{}, errBadParameter("Secret value is too large: %d bytes; the maximum is %d.", len(*p.Value), maxSecretValue)
	}
	if err := checkTags(p.Tags); err != nil {
		return store.Secret{}, err
	}
	now := h.cfg.Now().UTC()
	s := store.Secret{Vault: strings.ToLower(vault), Name: name, Value: *p.Value, ContentType: p.ContentType,
		Attributes: newAttributes(now), Tags: p.Tags}
	p.Attributes.apply(&s.Attributes, now)
	err := h.cfg.DB.Update(func(tx *store.Tx) error {
		if prev, err := store.Versions[store.Secret](tx, store.BucketSecrets, vault, name); err == nil && len(prev) > 0 && prev[len(prev)-1].Managed {
			return &apiError{status: http.StatusConflict, code: "Conflict",
				msg: fmt.Sprintf("Secret %s is managed by certificate %s and cannot be set directly; import a new certificate version instead.", name, name)}
		}
		return putVersion(tx, &s.Seq, &s.Version, func() error {
			return store.Put(tx, store.BucketSecrets, store.ObjectKey(vault, name, s.Version), s)
		})
	})
	if err == nil {
		h.changed(vault, kindSecrets, name, s.Version, s.Attributes)
	}
	return s, err
}

// putVersion assigns a new version and sequence number, then saves.
func putVersion(tx *store.Tx, seq *uint64, version *string, save func() error) error {
	n, err := store.Sequence(tx, store.BucketVersionSeq)
	if err != nil {
		return err
	}
	*seq, *version = n, store.NewVersion()
	return save()
}

func checkTags(tags map[string]string) error {
	if len(tags) > 15 {
		return errBadParameter("Too many tags: %d; the maximum is 15.", len(tags))
	}
	for k, v := range tags {
		if len(k) > 512 || len(v) > 256 {
			return errBadParameter("Tag %q is too long: names may have 512 characters and values 256.", k)
		}
	}
	return nil
}

// updateParams is the body of a PATCH on any object version.
type updateParams struct {
	ContentType *string           `json:"contentType,omitempty"`
	Attributes  *Attributes       `json:"attributes,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
}

func updateObject(h *Handler, r *http.Request, v store.Vault, o op) (int, any, error) {
	var p updateParams
	if err := decodeBody(r, &p); err != nil {
		return 0, nil, err
	}
	if err := checkTags(p.Tags); err != nil {
		return 0, nil, err
	}
	base, now := "https://"+r.Host, h.cfg.Now().UTC()
	switch o.kind {
	case kindSecrets:
		s, err := update(h, v.Name, o, func(s *store.Secret) {
			if p.ContentType != nil {
				s.ContentType = *p.ContentType
			}
			p.Attributes.apply(&s.Attributes, now)
			s.Tags = mergeTags(s.Tags, p.Tags)
		})
		if err != nil {
			return 0, nil, err
		}
		b, err := secretBundle(base, s, "")
		return http.StatusOK, b, err
	case kindKeys:
		k, err := update(h, v.Name, o, func(k *store.Key) { p.Attributes.apply(&k.Attributes, now); k.Tags = mergeTags(k.Tags, p.Tags) })
		if err != nil {
			return 0, nil, err
		}
		b, err := keyBundle(base, k)
		return http.StatusOK, b, err
	}
	c, err := update(h, v.Name, o, func(c *store.Certificate) { p.Attributes.apply(&c.Attributes, now); c.Tags = mergeTags(c.Tags, p.Tags) })
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, certBundle(base, c), nil
}

// SetSecretEnabled enables or disables one version of a secret (the
// newest for an empty version), as a PATCH of its attributes does.
func (h *Handler) SetSecretEnabled(vault, name, version string, enabled bool) (store.Secret, error) {
	now := h.cfg.Now().UTC()
	return update(h, strings.ToLower(vault), op{kind: kindSecrets, name: name, version: version}, func(s *store.Secret) {
		s.Attributes.Enabled, s.Attributes.Updated = enabled, now
	})
}

// update loads one version (the newest for an empty version), applies f and
// saves it back, in one transaction.
func update[T object](h *Handler, vault string, o op, f func(*T)) (T, error) {
	var out T
	err := h.cfg.DB.Update(func(tx *store.Tx) error {
		vs, err := store.Versions[T](tx, buckets[o.kind], vault, o.name)
		if err != nil {
			return err
		}
		if len(vs) == 0 {
			return errNotFound(o.kind, o.name, "")
		}
		cur, err := pick(vs, o.kind, o.name, o.version)
		if err != nil {
			return err
		}
		f(&cur)
		out = cur
		return store.Put(tx, buckets[o.kind], store.ObjectKey(vault, o.name, cur.ObjectVersion()), cur)
	})
	return out, err
}

func mergeTags(old, upd map[string]string) map[string]string {
	if upd == nil {
		return old
	}
	return upd
}
