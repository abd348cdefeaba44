// Package refresh carries the news that objects in a secret store changed,
// from where it arrives (Key Vault's events, a user asking) to the mounts
// and Secrets that hold them, through what every node already watches: the
// SecretProviderClass.
//
// One event costs one annotation write per class that references the
// object, never one per pod: the sync controller records the change on the
// class (ChangedAnnotation, the last MaxChanges changes), each node's driver
// sees it in its class cache and refreshes only its own volumes of that
// class, telling the provider which objects to read afresh (Attribute). A
// change is a hint, never data: the provider re-reads Key Vault with each
// mount's own identity, so a forged or stale change can cost a read but
// never put anything into a file that a fresh read would not.
package refresh

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

const (
	// ChangedAnnotation, on a SecretProviderClass, lists the last changes
	// to objects the class references (JSON, see Changes), newest last.
	// The sync controller writes it; drivers and the controller act on the
	// entries they have not seen.
	ChangedAnnotation = "secrets-store.kvmount.dev/changed"
	// RequestAnnotation, on a SecretProviderClass or a SecretSync, asks for
	// every object to be read afresh now: any new value is a new request
	// (`kvmount refresh` writes the time). Who may patch the object may
	// ask, so RBAC decides.
	RequestAnnotation = "secrets-store.kvmount.dev/refresh"
	// Attribute is the mount attribute by which the driver or the sync
	// controller tells the provider what to read afresh (JSON, see
	// Request). The driver never passes a pod's or a class's own value of
	// it.
	Attribute = "secrets-store.kvmount.dev/refresh"
	// MaxChanges bounds ChangedAnnotation's list: enough that a driver
	// whose watch missed a few updates still sees them.
	MaxChanges = 16
)

// Change is one new version of one object.
type Change struct {
	// ID is the event's ID: the same change delivered twice (Event Grid
	// delivers at least once) is one change.
	ID string `json:"id"`
	// Time is when the store made the change (the event's time).
	Time time.Time `json:"time"`
	// Vault, Kind and Name name the object: Kind is secret, key or
	// certificate.
	Vault string `json:"vault"`
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	// Version is the new version, when the event said it.
	Version string `json:"version,omitempty"`
}

// Kinds of object a change names.
const (
	KindSecret      = "secret"
	KindKey         = "key"
	KindCertificate = "certificate"
)

// Valid reports what is wrong with c, if anything.
func (c Change) Valid() error {
	switch {
	case c.ID == "":
		return errors.New("change has no id")
	case c.Vault == "" || c.Name == "":
		return errors.New("change names no vault or object")
	case c.Kind != KindSecret && c.Kind != KindKey && c.Kind != KindCertificate:
		return fmt.Errorf("change has kind %q: want secret, key or certificate", c.Kind)
	}
	return nil
}

func (c Change) String() string {
	s := c.Vault + "/" + c.Kind + "/" + c.Name
	if c.Version != "" {
		s += "@" + c.Version
	}
	return s
}

// ParseChanges reads ChangedAnnotation's value; an empty value is no
// change. Entries that are not valid changes are an error: the annotation
// is the controller's alone.
func ParseChanges(s string) ([]Change, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var cs []Change
	if err := json.Unmarshal([]byte(s), &cs); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", ChangedAnnotation, err)
	}
	for _, c := range cs {
		if err := c.Valid(); err != nil {
			return nil, fmt.Errorf("annotation %s: %w", ChangedAnnotation, err)
		}
	}
	return cs, nil
}

// FormatChanges writes ChangedAnnotation's value.
func FormatChanges(cs []Change) string {
	b, _ := json.Marshal(cs)
	return string(b)
}

// Add appends c to list unless a change of the same ID is in it, keeping
// the newest MaxChanges; added says whether c was new.
func Add(list []Change, c Change) (out []Change, added bool) {
	if slices.ContainsFunc(list, func(x Change) bool { return x.ID == c.ID }) {
		return list, false
	}
	out = append(slices.Clone(list), c)
	if len(out) > MaxChanges {
		out = out[len(out)-MaxChanges:]
	}
	return out, true
}

// New returns the changes in cur that old does not have: what a watcher
// has not acted on yet.
func New(old, cur []Change) []Change {
	var out []Change
	for _, c := range cur {
		if !slices.ContainsFunc(old, func(x Change) bool { return x.ID == c.ID }) {
			out = append(out, c)
		}
	}
	return out
}

// Request is what Attribute tells the provider: read afresh, with reads
// begun at Since or later, every object (All) or those Changes name; the
// other objects of the mount may be served as the versions it has.
type Request struct {
	Since   time.Time `json:"since"`
	All     bool      `json:"all,omitempty"`
	Changes []Change  `json:"changes,omitempty"`
}

// ParseRequest reads Attribute's value.
func ParseRequest(s string) (Request, error) {
	var r Request
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return Request{}, fmt.Errorf("attribute %s: %w", Attribute, err)
	}
	if r.Since.IsZero() {
		return Request{}, fmt.Errorf("attribute %s: since is required", Attribute)
	}
	for _, c := range r.Changes {
		if c.Vault == "" || c.Name == "" || c.Kind == "" {
			return Request{}, fmt.Errorf("attribute %s: a change names no vault, kind or object", Attribute)
		}
	}
	return r, nil
}

// Format writes Attribute's value.
func (r Request) Format() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// Merge combines two requests for the same mount into one that does both:
// the later since (a read begun after both serves both), and every change.
func (r Request) Merge(o Request) Request {
	out := Request{Since: r.Since, All: r.All || o.All}
	if o.Since.After(out.Since) {
		out.Since = o.Since
	}
	if out.All {
		return out
	}
	out.Changes = slices.Clone(r.Changes)
	for _, c := range o.Changes {
		if !slices.ContainsFunc(out.Changes, func(x Change) bool { return x.ID == c.ID }) {
			out.Changes = append(out.Changes, c)
		}
	}
	return out
}
