package keyvault

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"kvmount.dev/kvmount/internal/azsim/store"
)

// maxBody bounds request bodies: a PFX import is the largest legitimate one.
const maxBody = 1 << 20

type object interface {
	store.Secret | store.Key | store.Certificate
	ObjectVersion() string
	ObjectAttributes() store.Attributes
	ObjectSeq() uint64
}

var buckets = map[string]string{kindSecrets: store.BucketSecrets, kindKeys: store.BucketKeys, kindCerts: store.BucketCerts}

// versionsOf loads every version of an object, oldest first; none is a 404.
func versionsOf[T object](h *Handler, kind, vault, name string) ([]T, error) {
	var vs []T
	err := h.cfg.DB.View(func(tx *store.Tx) error {
		var err error
		vs, err = store.Versions[T](tx, buckets[kind], vault, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		return nil, errNotFound(kind, name, "")
	}
	return vs, nil
}

// pick returns the named version, or the newest for "".
func pick[T object](vs []T, kind, name, version string) (T, error) {
	if version == "" {
		return vs[len(vs)-1], nil
	}
	for _, v := range vs {
		if strings.EqualFold(v.ObjectVersion(), version) {
			return v, nil
		}
	}
	var zero T
	return zero, errNotFound(kind, name, version)
}

// getEnabled picks a version and refuses a disabled one. nbf and exp are
// reported but not enforced on reads, as the service documents.
func getEnabled[T object](h *Handler, kind, vault, name, version string) (T, error) {
	var zero T
	vs, err := versionsOf[T](h, kind, vault, name)
	if err != nil {
		return zero, err
	}
	v, err := pick(vs, kind, name, version)
	if err != nil {
		return zero, err
	}
	if !v.ObjectAttributes().Enabled {
		return zero, errDisabled(kind)
	}
	return v, nil
}

func getObject(h *Handler, r *http.Request, v store.Vault, o op) (int, any, error) {
	base := "https://" + r.Host
	switch o.kind {
	case kindSecrets:
		s, err := getEnabled[store.Secret](h, o.kind, v.Name, o.name, o.version)
		if err != nil {
			return 0, nil, err
		}
		b, err := secretBundle(base, s, r.URL.Query().Get("outContentType"))
		return http.StatusOK, b, err
	case kindKeys:
		k, err := getEnabled[store.Key](h, o.kind, v.Name, o.name, o.version)
		if err != nil {
			return 0, nil, err
		}
		b, err := keyBundle(base, k)
		return http.StatusOK, b, err
	}
	c, err := getEnabled[store.Certificate](h, o.kind, v.Name, o.name, o.version)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, certBundle(base, c), nil
}

// Attributes is the wire form of object attributes: unix seconds as
// JSON integers, as the SDK requires.
type Attributes struct {
	Enabled         *bool  `json:"enabled,omitempty"`
	NBF             *int64 `json:"nbf,omitempty"`
	EXP             *int64 `json:"exp,omitempty"`
	Created         int64  `json:"created,omitempty"`
	Updated         int64  `json:"updated,omitempty"`
	RecoveryLevel   string `json:"recoveryLevel,omitempty"`
	RecoverableDays int    `json:"recoverableDays,omitempty"`
}

func toWire(a store.Attributes) Attributes {
	enabled := a.Enabled
	w := Attributes{Enabled: &enabled, Created: a.Created.Unix(), Updated: a.Updated.Unix(),
		RecoveryLevel: "Recoverable+Purgeable", RecoverableDays: 90}
	if a.NBF != nil {
		n := a.NBF.Unix()
		w.NBF = &n
	}
	if a.EXP != nil {
		e := a.EXP.Unix()
		w.EXP = &e
	}
	return w
}

// apply copies the attributes a request sets onto a.
func (w *Attributes) apply(a *store.Attributes, now time.Time) {
	if w == nil {
		return
	}
	if w.Enabled != nil {
		a.Enabled = *w.Enabled
	}
	if w.NBF != nil {
		t := time.Unix(*w.NBF, 0).UTC()
		a.NBF = &t
	}
	if w.EXP != nil {
		t := time.Unix(*w.EXP, 0).UTC()
		a.EXP = &t
	}
	a.Updated = now
}

func newAttributes(now time.Time) store.Attributes {
	return store.Attributes{Enabled: true, Created: now, Updated: now}
}

// decodeBody reads a JSON request body into v, with Key Vault's 400 for
// anything that is not a JSON object of the right shape.
func decodeBody(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return errBadParameter("The request body could not be read.")
	}
	if len(data) > maxBody {
		return errBadParameter("The request body is larger than the %d bytes allowed.", maxBody)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return errBadParameter("The request body is not valid: %s", jsonProblem(err))
	}
	return nil
}

// jsonProblem describes a JSON decoding error without echoing input bytes,
// which may be secret material.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("property %q must be of type %s", te.Field, te.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at offset %d", se.Offset)
	}
	return "malformed JSON"
}

// page slices items by the maxresults and $skiptoken query parameters and
// adds a nextLink (with api-version, which the SDK does not re-add).
// maxresults must be 1 to 25, as the service says; checkMaxResults refuses
// others before the operation runs.
func page(r *http.Request, items []any) map[string]any {
	q := r.URL.Query()
	max, err := strconv.Atoi(q.Get("maxresults"))
	if err != nil {
		max = 25
	}
	skip, err := strconv.Atoi(q.Get("$skiptoken"))
	if err != nil || skip < 0 || skip > len(items) {
		skip = 0
	}
	end := min(skip+max, len(items))
	out := map[string]any{"value": items[skip:end], "nextLink": nil}
	if end < len(items) {
		next := url.Values{"api-version": {q.Get("api-version")}, "$skiptoken": {strconv.Itoa(end)}, "maxresults": {strconv.Itoa(max)}}
		out["nextLink"] = "https://" + r.Host + r.URL.Path + "?" + next.Encode()
	}
	return out
}

func listVersions(h *Handler, r *http.Request, v store.Vault, o op) (int, any, error) {
	base := "https://" + r.Host
	var items []any
	var err error
	switch o.kind {
	case kindSecrets:
		items, err = itemsOf[store.Secret](h, o.kind, v.Name, o.name, func(s store.Secret) any { return secretItem(base, s, true) })
	case kindKeys:
		items, err = itemsOf[store.Key](h, o.kind, v.Name, o.name, func(k store.Key) any { return keyItem(base, k, true) })
	default:
		items, err = itemsOf[store.Certificate](h, o.kind, v.Name, o.name, func(c store.Certificate) any { return certItem(base, c, true) })
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, page(r, items), nil
}

func itemsOf[T object](h *Handler, kind, vault, name string, item func(T) any) ([]any, error) {
	vs, err := versionsOf[T](h, kind, vault, name)
	if err != nil {
		return nil, err
	}
	return mapItems(vs, item), nil
}

// listObjects lists the newest version of every object of a kind, with
// version-less IDs.
func listObjects(h *Handler, r *http.Request, v store.Vault, o op) (int, any, error) {
	base := "https://" + r.Host
	var items []any
	err := h.cfg.DB.View(func(tx *store.Tx) error {
		switch o.kind {
		case kindSecrets:
			all, err := store.Latest[store.Secret](tx, store.BucketSecrets, v.Name)
			items = mapItems(all, func(s store.Secret) any { return secretItem(base, s, false) })
			return err
		case kindKeys:
			all, err := store.Latest[store.Key](tx, store.BucketKeys, v.Name)
			items = mapItems(all, func(k store.Key) any { return keyItem(base, k, false) })
			return err
		}
		all, err := store.Latest[store.Certificate](tx, store.BucketCerts, v.Name)
		items = mapItems(all, func(c store.Certificate) any { return certItem(base, c, false) })
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, page(r, items), nil
}

func mapItems[T any](xs []T, f func(T) any) []any {
	items := make([]any, len(xs))
	for i, x := range xs {
		items[i] = f(x)
	}
	return items
}

// checkMaxResults refuses a maxresults the service refuses.
func checkMaxResults(r *http.Request) error {
	v := r.URL.Query().Get("maxresults")
	if v == "" {
		return nil
	}
	if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 25 {
		return errBadParameter("The value %s for maxresults is not valid: it must be an integer between 1 and 25.", v)
	}
	return nil
}
