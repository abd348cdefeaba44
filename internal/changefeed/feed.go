// Package changefeed turns Key Vault's change events into refreshes: it
// receives them (a webhook behind a Service, or pulled from an Event Grid
// namespace topic with the controller's own identity), drops duplicates,
// finds the SecretProviderClasses that reference the changed object, and
// records the change on each (refresh.ChangedAnnotation) — one API write
// per class, whatever the number of pods or SecretSyncs. Nodes and the
// sync controller watch the classes and read the object again with each
// mount's own identity.
//
// An event is a hint, never data, so every kind of bad event is safe: a
// duplicate is dropped (by ID, and again by the class's list); a late one
// makes each reader find the version it has; a forged one is refused
// before anything happens (a webhook accepts only Event Grid's Entra token
// or the shared key; a namespace topic only events its senders publish),
// and one that gets through costs at most a read per principal that holds
// the object, never a wrong file. Lost events are caught by the poll.
package changefeed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	spcv1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	"kvmount.dev/kvmount/internal/azure/config"
	"kvmount.dev/kvmount/internal/azure/kvevents"
	"kvmount.dev/kvmount/internal/lru"
	"kvmount.dev/kvmount/internal/refresh"
)

// Config wires a Feed.
type Config struct {
	Dynamic dynamic.Interface
	// Classes is a SecretProviderClass informer (the sync controller's),
	// not yet started: the feed adds its index by vault.
	Classes cache.SharedIndexInformer
	Logger  *slog.Logger
	Metrics *Metrics
	Now     func() time.Time
}

// Feed handles events from any source.
type Feed struct {
	cfg Config
	// seen are the IDs of events handled, so that a duplicate delivery
	// (Event Grid delivers at least once; a webhook and a namespace topic
	// may both be subscribed) costs nothing.
	seen *lru.Cache[string, struct{}]
}

// Results of one event, for metrics and for the source's answer.
const (
	Accepted        = "accepted"      // recorded on at least one class
	Duplicate       = "duplicate"     // an ID already handled
	Ignored         = "ignored"       // not a new version (near expiry, expired, access policy)
	Unmatched       = "unmatched"     // no class references the object
	UnknownVault    = "unknown_vault" // no class names the vault: refused
	Malformed       = "malformed"
	Unauthenticated = "unauthenticated"
	Failed          = "failed" // the classes could not be written: the source retries
)

// vaultIndex indexes the Azure classes by every vault they read from.
const vaultIndex = "kvmount-vault"

// New returns a Feed; call before the informer starts.
func New(cfg Config) (*Feed, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.Classes.AddIndexers(cache.Indexers{vaultIndex: vaultsOf}); err != nil {
		return nil, fmt.Errorf("index classes by vault: %w", err)
	}
	return &Feed{cfg: cfg, seen: lru.New[string, struct{}](maxSeen, seenFor, cfg.Now)}, nil
}

// Event Grid retries for at most 24 hours, but a retry after an hour is
// rare; a duplicate older than seenFor costs one annotation read.
const (
	maxSeen = 16384
	seenFor = time.Hour
)

// vaultsOf names the vaults an Azure class reads (lower-cased).
func vaultsOf(obj any) ([]string, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, nil
	}
	if p, _, _ := unstructured.NestedString(u.Object, "spec", "provider"); p != "azure" {
		return nil, nil
	}
	var out []string
	for _, o := range config.References(paramsOf(u)) {
		v := strings.ToLower(o.Vault)
		if v != "" && !contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

func paramsOf(u *unstructured.Unstructured) map[string]string {
	p, _, _ := unstructured.NestedStringMap(u.Object, "spec", "parameters")
	return p
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Handle handles one event from source; a Failed result comes with the
// error, for the source to retry.
func (f *Feed) Handle(ctx context.Context, source string, e kvevents.Event) (string, error) {
	res, err := f.handle(ctx, e)
	f.cfg.Metrics.event(source, res)
	if res == Accepted && !e.Time.IsZero() {
		f.cfg.Metrics.delay(f.cfg.Now().Sub(e.Time))
	}
	return res, err
}

func (f *Feed) handle(ctx context.Context, e kvevents.Event) (string, error) {
	c, ok, err := e.Change()
	switch {
	case err != nil:
		f.cfg.Logger.Warn("event refused", "id", e.ID, "type", e.Type, "err", err)
		return Malformed, nil
	case !ok:
		f.cfg.Logger.Debug("event ignored: no new version", "id", e.ID, "type", e.Type)
		return Ignored, nil
	}
	if _, dup := f.seen.Get(c.ID); dup {
		return Duplicate, nil
	}
	classes, err := f.cfg.Classes.GetIndexer().ByIndex(vaultIndex, strings.ToLower(c.Vault))
	if err != nil {
		return Failed, err
	}
	if len(classes) == 0 {
		f.cfg.Logger.Warn("event refused: no SecretProviderClass reads the vault", "id", c.ID, "vault", c.Vault)
		return UnknownVault, nil
	}
	var matched []*unstructured.Unstructured
	for _, obj := range classes {
		if u := obj.(*unstructured.Unstructured); references(u, c) {
			matched = append(matched, u)
		}
	}
	added, err := f.recordAll(ctx, matched, c)
	if err != nil {
		return Failed, err
	}
	if len(matched) == 0 {
		f.cfg.Logger.Debug("event about an object no class references", "id", c.ID, "object", c.String())
		return Unmatched, nil
	}
	f.seen.Put(c.ID, struct{}{})
	if added == 0 {
		return Duplicate, nil // every class had it: another replica's delivery
	}
	f.cfg.Logger.Info("change recorded", "id", c.ID, "object", c.String(), "classes", len(matched))
	return Accepted, nil
}

// references reports whether class u reads the object c changed.
func references(u *unstructured.Unstructured, c refresh.Change) bool {
	for _, o := range config.References(paramsOf(u)) {
		if o.ChangedBy(c, o.Vault) {
			return true
		}
	}
	return false
}

// parallelWrites bounds the class writes one event makes at once: the
// nodes act on each class as its write lands, so writing them one after
// another would delay the last class by all the others' round trips.
const parallelWrites = 32

// recordAll records c on every class of matched, returning how many did
// not have it yet.
func (f *Feed) recordAll(ctx context.Context, matched []*unstructured.Unstructured, c refresh.Change) (int, error) {
	var mu sync.Mutex
	var added int
	var errs []error
	sem := make(chan struct{}, parallelWrites)
	var wg sync.WaitGroup
	for _, u := range matched {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			wrote, err := f.record(ctx, u, c)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("record change %s on SecretProviderClass %s/%s: %w", c, u.GetNamespace(), u.GetName(), err))
			}
			if wrote {
				added++
			}
		})
	}
	wg.Wait()
	return added, errors.Join(errs...)
}

// maxConflicts bounds the retries of a write that raced another.
const maxConflicts = 5

// record adds c to class u's change list unless it is there; the write
// names the resource version read, so that two replicas recording
// different changes at once both land.
func (f *Feed) record(ctx context.Context, u *unstructured.Unstructured, c refresh.Change) (bool, error) {
	res := f.cfg.Dynamic.Resource(spcv1.SecretProviderClassResource).Namespace(u.GetNamespace())
	for range maxConflicts {
		list, err := refresh.ParseChanges(u.GetAnnotations()[refresh.ChangedAnnotation])
		if err != nil {
			list = nil // not the controller's writing: start afresh
		}
		list, added := refresh.Add(list, c)
		if !added {
			return false, nil
		}
		patch := fmt.Appendf(nil, `{"metadata":{"resourceVersion":%q,"annotations":{%q:%q}}}`, u.GetResourceVersion(), refresh.ChangedAnnotation, refresh.FormatChanges(list))
		_, err = res.Patch(ctx, u.GetName(), types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "kvmount-changefeed"})
		switch {
		case err == nil:
			f.cfg.Metrics.write("written")
			return true, nil
		case apierrors.IsConflict(err):
			f.cfg.Metrics.write("conflict")
			if u, err = res.Get(ctx, u.GetName(), metav1.GetOptions{}); err != nil {
				return false, err
			}
		case apierrors.IsNotFound(err):
			return false, nil // deleted meanwhile
		default:
			f.cfg.Metrics.write("failed")
			return false, err
		}
	}
	return false, fmt.Errorf("%d conflicting writes", maxConflicts)
}
