// Package eventgrid is azsim's Event Grid for Key Vault, written from the
// service's documentation: system topics whose source is a vault,
// event subscriptions with filters, the Key Vault event types with their
// data fields, published when the vault changes, and two destinations — a
// webhook (Event Grid schema or CloudEvents 1.0, each with its validation
// handshake, the aeg-* headers, at-least-once delivery on the documented
// retry schedule, Entra-protected delivery with a bearer token) and a
// namespace topic with pull delivery (receive with locks, acknowledge,
// release, reject, renew lock, a maximum delivery count, redelivery when a
// lock expires), served on the namespace's own host with the data plane's
// paths and Entra RBAC.
//
// Pending deliveries live in memory: an azsim restart loses them, where
// Event Grid would keep them (the consumer's poll still catches up).
package eventgrid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"kvmount.dev/kvmount/internal/azsim/jwt"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// Tokens issues and verifies Entra access tokens (azsim's Entra ID).
type Tokens interface {
	// IssueApp signs a token for app (appid) of tenant, for resource.
	IssueApp(tenant, appID, objectID, resource string, lifetime time.Duration) (string, error)
	Verify(token string) (jwt.Claims, error)
}

// EventGridAppID is Event Grid's first-party application: the appid of the
// tokens it presents to Entra-protected webhooks.
const EventGridAppID = "4962773b-9cdb-44cf-a8bf-237846a00ab7"

// Audience is the data plane's token audience (scope
// https://eventgrid.azure.net/.default).
const Audience = "https://eventgrid.azure.net"

// Config configures the broker.
type Config struct {
	DB             *store.DB
	SubscriptionID string
	Tokens         Tokens
	// Client delivers to webhooks; it must trust their certificates.
	Client *http.Client
	// RetryScale multiplies the retry schedule and the lock and
	// validation timeouts' wait times (tests run it fast); 0 is 1.
	RetryScale float64
	// HostSuffix is the namespaces' host suffix: namespace n is
	// n.<HostSuffix>.
	HostSuffix string
	// ValidationBase is the URL manual validation GETs go to.
	ValidationBase string
	// SourceExists reports whether a system topic's source resource
	// exists (a vault's ID); nil accepts any.
	SourceExists func(id string) bool
	Logger       *slog.Logger
	Now          func() time.Time
}

// Broker routes events from sources to subscriptions.
type Broker struct {
	cfg Config

	mu       sync.Mutex // guards webhooks and queues
	webhooks map[string]*webhook
	queues   map[string]*queue
	closed   bool
}

// New returns a broker; Start resumes deliveries of stored subscriptions.
func New(cfg Config) *Broker {
	if cfg.RetryScale == 0 {
		cfg.RetryScale = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	return &Broker{cfg: cfg, webhooks: map[string]*webhook{}, queues: map[string]*queue{}}
}

// Close stops every delivery.
func (b *Broker) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for _, w := range b.webhooks {
		w.stop()
	}
	for _, q := range b.queues {
		q.close()
	}
}

// scaled is d on the broker's time scale.
func (b *Broker) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * b.cfg.RetryScale)
}

// KeyVaultChange is a new object version in a vault.
type KeyVaultChange struct {
	// VaultID is the vault's resource ID; VaultURL its data-plane URL.
	VaultID, VaultName, VaultURL string
	// Kind is "secrets", "keys" or "certificates".
	Kind, Name, Version string
	NBF, EXP            *time.Time
}

// eventTypes of a new version, by kind.
var newVersionTypes = map[string]string{
	"secrets":      "Microsoft.KeyVault.SecretNewVersionCreated",
	"keys":         "Microsoft.KeyVault.KeyNewVersionCreated",
	"certificates": "Microsoft.KeyVault.CertificateNewVersionCreated",
}

// objectTypes are data.ObjectType's values by kind.
var objectTypes = map[string]string{"secrets": "Secret", "keys": "Key", "certificates": "Certificate"}

// event is one event before it is written in a schema.
type event struct {
	ID, Type, Topic, Subject string
	Time                     time.Time
	Data                     map[string]any
}

// PublishNewVersion publishes a *NewVersionCreated event.
func (b *Broker) PublishNewVersion(c KeyVaultChange) {
	b.publish(c.VaultID, b.keyVaultEvent(newVersionTypes[c.Kind], c))
}

// keyVaultEvent builds a Key Vault event as the documentation shows it:
// data keys in PascalCase, Id the version's URL, NBF and EXP in seconds.
func (b *Broker) keyVaultEvent(typ string, c KeyVaultChange) event {
	data := map[string]any{"Id": strings.TrimRight(c.VaultURL, "/") + "/" + c.Kind + "/" + c.Name + "/" + c.Version,
		"VaultName": c.VaultName, "ObjectType": objectTypes[c.Kind], "ObjectName": c.Name, "Version": c.Version, "NBF": unix(c.NBF), "EXP": unix(c.EXP)}
	return event{ID: newID(), Type: typ, Topic: c.VaultID, Subject: c.Name, Time: b.cfg.Now().UTC(), Data: data}
}

// PublishExpiry publishes a *NearExpiry or *Expired event of type typ.
func (b *Broker) PublishExpiry(typ string, c KeyVaultChange) {
	b.publish(c.VaultID, b.keyVaultEvent(typ, c))
}

// PublishAccessPolicyChanged publishes VaultAccessPolicyChanged.
func (b *Broker) PublishAccessPolicyChanged(vaultID, vaultName, vaultURL string) {
	data := map[string]any{"Id": strings.TrimRight(vaultURL, "/"), "VaultName": vaultName, "ObjectType": "Vault", "ObjectName": vaultName,
		"Version": nil, "NBF": nil, "EXP": nil}
	b.publish(vaultID, event{ID: newID(), Type: "Microsoft.KeyVault.VaultAccessPolicyChanged", Topic: vaultID, Subject: vaultName, Time: b.cfg.Now().UTC(), Data: data})
}

func unix(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.Unix()
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// publish hands ev to every live subscription of every system topic of
// source whose filter it passes.
func (b *Broker) publish(source string, ev event) {
	var subs []Subscription
	_ = b.cfg.DB.View(func(tx *store.Tx) error {
		topics, err := store.List[SystemTopic](tx, bucketSystemTopics, "")
		if err != nil {
			return err
		}
		for _, t := range topics {
			if !strings.EqualFold(t.Source, source) {
				continue
			}
			all, err := store.List[Subscription](tx, bucketSubscriptions, store.Path(t.ResourceGroup, t.Name)+"/")
			if err != nil {
				return err
			}
			subs = append(subs, all...)
		}
		return nil
	})
	for _, s := range subs {
		if s.State != StateSucceeded || !s.Filter.matches(ev.Type, ev.Subject) {
			continue
		}
		switch s.EndpointType {
		case EndpointWebHook:
			b.webhookFor(s).enqueue(ev)
		case EndpointNamespaceTopic:
			b.toNamespaceTopic(s.Endpoint, ev)
		}
	}
}

// eventGridJSON writes ev in the Event Grid schema (one element of the
// delivered array).
func eventGridJSON(ev event) map[string]any {
	return map[string]any{"id": ev.ID, "topic": ev.Topic, "subject": ev.Subject, "eventType": ev.Type,
		"eventTime": ev.Time.Format(time.RFC3339Nano), "data": ev.Data, "dataVersion": "1", "metadataVersion": "1"}
}

// cloudEventJSON writes ev as a CloudEvent 1.0.
func cloudEventJSON(ev event) map[string]any {
	return map[string]any{"specversion": "1.0", "id": ev.ID, "source": ev.Topic, "subject": ev.Subject, "type": ev.Type,
		"time": ev.Time.Format(time.RFC3339Nano), "data": ev.Data}
}

// Handler routes the broker's HTTP surface: manual validation on the
// management host (path ValidatePath) and the namespaces' data plane on
// their hosts.
func (b *Broker) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == ValidatePath {
			b.serveValidate(w, r)
			return
		}
		b.serveDataPlane(w, r)
	})
}

// ValidatePath is where manual validation GETs go.
const ValidatePath = "/eventgrid/validate"

// Stats are the broker's counters for one subscription.
type Stats struct {
	// Webhooks: deliveries that succeeded, attempts made, attempts
	// failed, events dropped (a 400, 401 or 413, or out of attempts or
	// time), events waiting.
	Delivered, Attempts, Failed, Dropped, Pending int `json:",omitempty"`
	// Queues: events received (handed out), acknowledged, released,
	// rejected, redelivered after a lock expired, dead-lettered (past the
	// maximum delivery count), available and locked now.
	Received, Acknowledged, Released, Rejected, LockExpired, DeadLettered, Available, Locked int `json:",omitempty"`
}

// AllStats returns every live subscription's counters, by resource path.
func (b *Broker) AllStats() map[string]Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]Stats{}
	for k, w := range b.webhooks {
		out["systemTopics/"+k] = w.stats()
	}
	for k, q := range b.queues {
		out["namespaces/"+k] = q.stats()
	}
	return out
}

// writeError writes Event Grid's error shape.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// ctxTimeout is a delivery attempt's context: Event Grid waits 30 s.
func ctxTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}
