package syncer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	spcv1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
	"kvmount.dev/kvmount/internal/lru"
	"kvmount.dev/kvmount/internal/refresh"
)

// answer is a provider's answer for one (namespace, class, service
// account): files by path and the objects' versions.
type answer struct {
	files    map[string][]byte
	versions map[string]string
	// started is when the call began: it can serve any need that arose
	// before.
	started time.Time
	fresh   bool
	err     error
}

// calls coalesces provider calls. SecretSyncs that share a namespace, a
// class (UID and generation) and a service account ask the provider the
// same question as the same principal, so one answer serves them all — but
// only an answer from a call started after the need arose (a SecretSync
// created, changed or polled at time T is served by a call started at T or
// later, never by an older one), and a need for fresh data only by a call
// that sent no versions (the provider reads the store itself).
type calls struct {
	now func() time.Time
	// linger is how long a call waits for others to join before it
	// starts.
	linger time.Duration

	mu     sync.Mutex // guards flight and recent
	flight map[string]*call
	recent *lru.Cache[string, *answer]
	// started and joined count calls made and needs served by another's.
	started, joined int
}

type call struct {
	done chan struct{}
	a    *answer
}

// linger is how long a provider call waits for SecretSyncs asking the same
// to join: a manifest of many SecretSyncs arrives over a few hundred
// milliseconds of watch events.
const linger = 250 * time.Millisecond

func newCalls(now func() time.Time, linger time.Duration) *calls {
	return &calls{now: now, linger: linger, flight: map[string]*call{}, recent: lru.New[string, *answer](4096, 10*time.Minute, now)}
}

// get returns an answer for key that serves a need from since (fresh: one
// read from the store), calling do when none in hand or in flight can.
func (cs *calls) get(ctx context.Context, key string, since time.Time, fresh bool, do func(ctx context.Context, started time.Time) *answer) *answer {
	serves := func(a *answer) bool { return !a.started.Before(since) && (a.fresh || !fresh) }
	cs.mu.Lock()
	if a, ok := cs.recent.Get(key); ok && a.err == nil && serves(a) {
		cs.joined++
		cs.mu.Unlock()
		return a
	}
	if c, ok := cs.flight[key]; ok && serves(c.a) {
		cs.joined++
		cs.mu.Unlock()
		select {
		case <-c.done:
			return c.a
		case <-ctx.Done():
			return &answer{err: ctx.Err()}
		}
	}
	// The call starts a moment from now, and serves every need that
	// arises until then: SecretSyncs created or changed together (a
	// manifest of many, a class change) share it.
	c := &call{done: make(chan struct{}), a: &answer{started: cs.now().Add(cs.linger), fresh: fresh}}
	cs.flight[key] = c
	cs.started++
	cs.mu.Unlock()

	if cs.linger > 0 {
		t := time.NewTimer(cs.linger)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	got := do(ctx, c.a.started)
	c.a.files, c.a.versions, c.a.err = got.files, got.versions, got.err
	cs.mu.Lock()
	if cs.flight[key] == c {
		delete(cs.flight, key)
	}
	if c.a.err == nil {
		cs.recent.Put(key, c.a)
	}
	cs.mu.Unlock()
	close(c.done)
	return c.a
}

// stats returns the calls made and the needs served by another's call.
func (cs *calls) stats() (started, joined int) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.started, cs.joined
}

// budgets limit provider calls per vault, so that a restart (every
// SecretSync syncing at once) or a burst of new SecretSyncs does not hit a
// vault with everything at once.
type budgets struct {
	qps   rate.Limit
	burst int
	m     *lru.Cache[string, *rate.Limiter]
}

func newBudgets(qps float64, burst int) *budgets {
	if burst < 1 {
		burst = 1
	}
	return &budgets{qps: rate.Limit(qps), burst: burst, m: lru.New[string, *rate.Limiter](1024, time.Hour, nil)}
}

// wait waits for the vault's budget.
func (b *budgets) wait(ctx context.Context, vault string) error {
	l, _ := b.m.GetOrAdd(vault, func() (*rate.Limiter, error) { return rate.NewLimiter(b.qps, b.burst), nil })
	return l.Wait(ctx)
}

// vaultOf names the store a class reads, for its budget: its keyvaultName
// (the Azure provider's parameter), else the provider.
func vaultOf(spc *spcv1.SecretProviderClass) string {
	if v := spc.Spec.Parameters["keyvaultName"]; v != "" {
		return string(spc.Spec.Provider) + "/" + strings.ToLower(v)
	}
	return string(spc.Spec.Provider)
}

// fetch asks the class's provider for the SecretSync's files, sharing the
// call with every SecretSync that asks the same question (calls).
func (c *Controller) fetch(ctx context.Context, ss *ssv1.SecretSync, spc *spcv1.SecretProviderClass, n need) *answer {
	if n.fresh {
		n.changes = nil // everything is read afresh
	}
	key := strings.Join([]string{ss.Namespace, string(spc.UID), fmt.Sprint(spc.Generation), ss.Spec.ServiceAccountName, versionsKey(n.versions, n.fresh), changesKey(n.changes)}, "|")
	return c.calls.get(ctx, key, n.since, n.fresh, func(ctx context.Context, started time.Time) *answer {
		a := &answer{}
		if err := c.budgets.wait(ctx, vaultOf(spc)); err != nil {
			a.err = &retryLater{err}
			return a
		}
		c.cfg.Metrics.providerCall()
		var r *refresh.Request
		if len(n.changes) > 0 {
			r = &refresh.Request{Since: c.noticed(n.changes), Changes: n.changes}
		}
		a.files, a.versions, a.err = c.mount(ctx, ss, spc, n.fresh, n.versions, r)
		return a
	})
}

// noticed is when the controller first saw the latest of changes: the
// provider reads the object once, at or after it, for every class and
// SecretSync of one principal that holds it.
func (c *Controller) noticed(changes []refresh.Change) time.Time {
	var latest time.Time
	for _, ch := range changes {
		t, _ := c.seen.GetOrAdd(ch.ID, func() (time.Time, error) { return c.cfg.Now(), nil })
		if t.After(latest) {
			latest = t
		}
	}
	return latest
}

// changesKey tells apart calls that read different changes afresh.
func changesKey(changes []refresh.Change) string {
	ids := make([]string, len(changes))
	for i, ch := range changes {
		ids[i] = ch.ID
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

// versionsKey tells apart calls that send different versions (a poll's
// call says which versions the caller has).
func versionsKey(versions map[string]string, fresh bool) string {
	if fresh || len(versions) == 0 {
		return "fresh"
	}
	ids := slices.Sorted(maps.Keys(versions))
	h := sha256.New()
	for _, id := range ids {
		fmt.Fprintf(h, "%s=%s\n", id, versions[id])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Attribute keys the driver sends for a pod, which upstream's controller
// sends for a SecretSync.
const (
	attrPodName   = "csi.storage.k8s.io/pod.name"
	attrPodUID    = "csi.storage.k8s.io/pod.uid"
	attrPodNS     = "csi.storage.k8s.io/pod.namespace"
	attrSAName    = "csi.storage.k8s.io/serviceAccount.name"
	attrSATokens  = "csi.storage.k8s.io/serviceAccount.tokens"
	mountTarget   = "/mnt/secrets-store"
	defaultAccess = "420" // 0644, as upstream's controller sends it
)

// mount is one provider call, with the attributes upstream's controller
// sends: the class's parameters, the controller's pod as the pod (in the
// SecretSync's namespace), the service account and its tokens. fresh sends
// no versions: the provider reads the store (a first mount). r, if set,
// names the objects to read afresh, the others being served as versions.
func (c *Controller) mount(ctx context.Context, ss *ssv1.SecretSync, spc *spcv1.SecretProviderClass, fresh bool, versions map[string]string, r *refresh.Request) (map[string][]byte, map[string]string, error) {
	attrs := maps.Clone(spc.Spec.Parameters)
	if attrs == nil {
		attrs = map[string]string{}
	}
	delete(attrs, refresh.Attribute) // only the controller says what to refresh
	if r != nil && !fresh {
		attrs[refresh.Attribute] = r.Format()
	}
	attrs[attrPodName], attrs[attrPodUID], attrs[attrPodNS] = c.cfg.PodName, c.cfg.PodUID, ss.Namespace
	attrs[attrSAName] = ss.Spec.ServiceAccountName
	toks, err := c.tokens.attribute(ctx, ss.Namespace, ss.Spec.ServiceAccountName)
	if err != nil {
		return nil, nil, err
	}
	attrs[attrSATokens] = toks
	a, err := json.Marshal(attrs)
	if err != nil {
		return nil, nil, err
	}
	req := &v1alpha1.MountRequest{Attributes: string(a), Secrets: "{}", Permission: defaultAccess, TargetPath: mountTarget}
	if !fresh {
		for _, id := range slices.Sorted(maps.Keys(versions)) {
			req.CurrentObjectVersion = append(req.CurrentObjectVersion, &v1alpha1.ObjectVersion{Id: id, Version: versions[id]})
		}
	}
	provider := string(spc.Spec.Provider)
	resp, err := c.cfg.Providers.Mount(ctx, provider, req, c.cfg.ProviderTimeout)
	if err != nil {
		return nil, nil, &providerError{provider: provider, err: err}
	}
	if code := resp.GetError().GetCode(); code != "" {
		return nil, nil, &providerError{provider: provider, err: fmt.Errorf("provider error code %s", code)}
	}
	if len(resp.GetFiles()) == 0 && len(resp.GetObjectVersion()) > 0 {
		return nil, nil, &providerError{provider: provider, err: fmt.Errorf("provider %s returned object versions but no file contents: a SecretSync needs a provider that returns its files in the Mount response", provider)}
	}
	files := make(map[string][]byte, len(resp.GetFiles()))
	for _, f := range resp.GetFiles() {
		files[f.GetPath()] = f.GetContents()
	}
	got := make(map[string]string, len(resp.GetObjectVersion()))
	for _, v := range resp.GetObjectVersion() {
		got[v.GetId()] = v.GetVersion()
	}
	return files, got, nil
}

// providerError is a failed provider call.
type providerError struct {
	provider string
	err      error
}

func (e *providerError) Error() string { return e.err.Error() }
func (e *providerError) Unwrap() error { return e.err }
