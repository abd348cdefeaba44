// Package kvevents reads Azure Key Vault's change events as Event Grid
// delivers them — the Event Grid schema (a JSON array, to a webhook) or
// CloudEvents 1.0 (one event or a batch, to a webhook or a namespace topic)
// — with Microsoft's own models (azsystemevents, azcore's CloudEvent), and
// turns the new-version events into changes (package refresh).
//
// A change is a hint: it names what to read again, never what to write.
// Everything is checked that can be without a read: the type, the object
// kind against the type, the vault in the data against the vault the
// event's topic or source names, and the fields' lengths.
package kvevents

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/messaging"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/eventgrid/azsystemevents"

	"kvmount.dev/kvmount/internal/refresh"
)

// Event is one delivered event, either schema.
type Event struct {
	ID   string
	Type string
	// Topic is the vault's resource ID (Event Grid schema's topic,
	// CloudEvents' source).
	Topic   string
	Subject string
	Time    time.Time
	Data    []byte
}

// Event types of Key Vault (Microsoft.KeyVault.*) and Event Grid's
// subscription validation.
const (
	TypeSecretNewVersion      = azsystemevents.TypeKeyVaultSecretNewVersionCreated
	TypeKeyNewVersion         = azsystemevents.TypeKeyVaultKeyNewVersionCreated
	TypeCertificateNewVersion = azsystemevents.TypeKeyVaultCertificateNewVersionCreated
	TypeValidation            = azsystemevents.TypeSubscriptionValidation
)

// kinds maps the new-version events to the kind of object they change.
var kinds = map[string]string{
	TypeSecretNewVersion:      refresh.KindSecret,
	TypeKeyNewVersion:         refresh.KindKey,
	TypeCertificateNewVersion: refresh.KindCertificate,
}

// objectTypes are each kind's data.ObjectType.
var objectTypes = map[string]string{refresh.KindSecret: "secret", refresh.KindKey: "key", refresh.KindCertificate: "certificate"}

// Known reports whether t is a Key Vault event type (or validation), for
// bounded metric labels: anything else is "other".
func Known(t string) bool {
	switch t {
	case TypeSecretNewVersion, TypeKeyNewVersion, TypeCertificateNewVersion, TypeValidation,
		azsystemevents.TypeKeyVaultSecretNearExpiry, azsystemevents.TypeKeyVaultSecretExpired,
		azsystemevents.TypeKeyVaultKeyNearExpiry, azsystemevents.TypeKeyVaultKeyExpired,
		azsystemevents.TypeKeyVaultCertificateNearExpiry, azsystemevents.TypeKeyVaultCertificateExpired,
		azsystemevents.TypeKeyVaultAccessPolicyChanged:
		return true
	}
	return false
}

// maxBody bounds a delivery: Event Grid's batches are at most 1 MB.
const maxBody = 1 << 20

// ErrMalformed is a delivery that is not events of the schema.
var ErrMalformed = errors.New("malformed events")

// ParseEventGrid reads a delivery in the Event Grid schema: a JSON array.
func ParseEventGrid(body []byte) ([]Event, error) {
	if len(body) > maxBody {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(body))
	}
	var raw []azsystemevents.EventGridEvent
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	out := make([]Event, 0, len(raw))
	for _, r := range raw {
		if r.ID == nil || r.EventType == nil {
			return nil, fmt.Errorf("%w: an event without id or eventType", ErrMalformed)
		}
		e := Event{ID: *r.ID, Type: *r.EventType, Topic: deref(r.Topic), Subject: deref(r.Subject)}
		if r.EventTime != nil {
			e.Time = *r.EventTime
		}
		e.Data, _ = r.Data.([]byte)
		out = append(out, e)
	}
	return out, nil
}

// ParseCloudEvents reads a delivery in CloudEvents 1.0's structured JSON
// mode: one event, or a batch (a JSON array).
func ParseCloudEvents(body []byte) ([]Event, error) {
	if len(body) > maxBody {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(body))
	}
	var raw []messaging.CloudEvent
	trimmed := strings.TrimSpace(string(body))
	if strings.HasPrefix(trimmed, "[") {
		if err := json.Unmarshal(body, &raw); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	} else {
		var one messaging.CloudEvent
		if err := json.Unmarshal(body, &one); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		raw = []messaging.CloudEvent{one}
	}
	out := make([]Event, 0, len(raw))
	for _, r := range raw {
		out = append(out, FromCloudEvent(r))
	}
	return out, nil
}

// FromCloudEvent converts a CloudEvent (as a namespace topic's receiver
// hands it over).
func FromCloudEvent(r messaging.CloudEvent) Event {
	e := Event{ID: r.ID, Type: r.Type, Topic: r.Source, Subject: deref(r.Subject)}
	if r.Time != nil {
		e.Time = *r.Time
	}
	switch d := r.Data.(type) {
	case []byte:
		e.Data = d
	case nil:
	default:
		e.Data, _ = json.Marshal(d)
	}
	return e
}

// Validation is Event Grid's subscription validation event's data.
type Validation struct {
	Code, URL string
}

// ValidationOf reads a SubscriptionValidation event.
func ValidationOf(e Event) (Validation, error) {
	var d azsystemevents.SubscriptionValidationEventData
	if e.Type != TypeValidation || json.Unmarshal(e.Data, &d) != nil || d.ValidationCode == nil {
		return Validation{}, fmt.Errorf("%w: not a subscription validation event", ErrMalformed)
	}
	return Validation{Code: *d.ValidationCode, URL: deref(d.ValidationURL)}, nil
}

// Change turns a new-version event into a change; ok is false for the
// other Key Vault events (near expiry, expired, access policy changed),
// which announce no new version. A new-version event that does not hold
// together is an error.
func (e Event) Change() (c refresh.Change, ok bool, err error) {
	kind, ok := kinds[e.Type]
	if !ok {
		return refresh.Change{}, false, nil
	}
	d, err := dataOf(e.Data)
	if err != nil {
		return refresh.Change{}, false, err
	}
	switch {
	case d.vault == "" || d.name == "":
		return refresh.Change{}, false, fmt.Errorf("%w: %s event %s names no vault or object", ErrMalformed, e.Type, e.ID)
	case d.objectType != "" && !strings.EqualFold(d.objectType, objectTypes[kind]):
		return refresh.Change{}, false, fmt.Errorf("%w: %s event %s is about a %s", ErrMalformed, e.Type, e.ID, d.objectType)
	case e.Topic != "" && !strings.EqualFold(lastSegment(e.Topic), d.vault):
		return refresh.Change{}, false, fmt.Errorf("%w: event %s comes from %s but names vault %s", ErrMalformed, e.ID, e.Topic, d.vault)
	case len(e.ID) > 256 || len(d.vault) > 24 || len(d.name) > 127 || len(d.version) > 64:
		return refresh.Change{}, false, fmt.Errorf("%w: event %s has a field too long for Key Vault", ErrMalformed, truncate(e.ID))
	case e.ID == "":
		return refresh.Change{}, false, fmt.Errorf("%w: event without id", ErrMalformed)
	}
	return refresh.Change{ID: e.ID, Time: e.Time, Vault: strings.ToLower(d.vault), Kind: kind, Name: d.name, Version: d.version}, true, nil
}

// data is a Key Vault event's data.
type data struct {
	vault, objectType, name, version string
}

// dataOf reads the data with Microsoft's model (PascalCase keys: Id,
// VaultName, ObjectType, ObjectName, Version, NBF, EXP), and, for what it
// misses, case- and space-insensitively: the documentation's own sample
// has "ObjectName " and " Version", and other SDKs write camelCase.
func dataOf(b []byte) (data, error) {
	var typed azsystemevents.KeyVaultSecretNewVersionCreatedEventData
	var d data
	// The model fails on what it does not expect (the sample's NBF is a
	// string); the loose reading below then decides.
	if json.Unmarshal(b, &typed) == nil {
		d = data{vault: deref(typed.VaultName), objectType: deref(typed.ObjectType), name: deref(typed.ObjectName), version: deref(typed.Version)}
		if d.vault != "" && d.name != "" {
			return d.trimmed(), nil
		}
	}
	var loose map[string]any
	if err := json.Unmarshal(b, &loose); err != nil {
		return data{}, fmt.Errorf("%w: data: %v", ErrMalformed, err)
	}
	for k, v := range loose {
		s, _ := v.(string)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "vaultname":
			d.vault = s
		case "objecttype":
			d.objectType = s
		case "objectname":
			d.name = s
		case "version":
			d.version = s
		}
	}
	return d.trimmed(), nil
}

func (d data) trimmed() data {
	return data{vault: strings.TrimSpace(d.vault), objectType: strings.TrimSpace(d.objectType), name: strings.TrimSpace(d.name), version: strings.TrimSpace(d.version)}
}

func lastSegment(id string) string {
	id = strings.TrimRight(id, "/")
	return id[strings.LastIndex(id, "/")+1:]
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
