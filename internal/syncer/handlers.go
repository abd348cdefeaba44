package syncer

import (
	"hash/fnv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"

	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
	"kvmount.dev/kvmount/internal/refresh"
)

// The caches' events decide what is synced and how fresh it must be: a new
// SecretSync, a new generation of it or of its class, and a forced sync
// read the store afresh; an edited or deleted Secret is restored from the
// provider's answer, which its cache may serve; a poll is a rotation.

func (c *Controller) ssAdded(obj any) {
	if key, ok := keyOf(obj); ok {
		c.mark(key, true)
	}
}

// ssUpdated queues a SecretSync whose spec changed (a new generation) or
// for which a refresh was asked (a new refresh.RequestAnnotation value);
// its status and other metadata changes, most of them the controller's
// own writes, queue nothing.
func (c *Controller) ssUpdated(old, cur any) {
	o, ok1 := old.(*unstructured.Unstructured)
	n, ok2 := cur.(*unstructured.Unstructured)
	if !ok1 || !ok2 || (o.GetGeneration() == n.GetGeneration() && !requested(o, n)) {
		return
	}
	if key, ok := keyOf(cur); ok {
		c.mark(key, true)
	}
}

// requested reports a new refresh request on an object.
func requested(old, cur *unstructured.Unstructured) bool {
	v := cur.GetAnnotations()[refresh.RequestAnnotation]
	return v != "" && v != old.GetAnnotations()[refresh.RequestAnnotation]
}

// spcUpdated acts on a class change: a new spec, or a refresh asked for,
// syncs its SecretSyncs afresh; changes recorded on it (Key Vault's events)
// sync them reading only the objects changed; other metadata changes
// nothing.
func (c *Controller) spcUpdated(old, cur any) {
	o, ok1 := old.(*unstructured.Unstructured)
	n, ok2 := cur.(*unstructured.Unstructured)
	if !ok1 || !ok2 || o.GetGeneration() != n.GetGeneration() || o.GetUID() != n.GetUID() || requested(o, n) {
		c.spcChanged(cur)
		return
	}
	was, _ := refresh.ParseChanges(o.GetAnnotations()[refresh.ChangedAnnotation])
	now, err := refresh.ParseChanges(n.GetAnnotations()[refresh.ChangedAnnotation])
	if err != nil {
		c.cfg.Logger.Warn("SecretProviderClass's change list ignored", "class", n.GetNamespace()+"/"+n.GetName(), "err", err)
	}
	changes := refresh.New(was, now)
	if len(changes) == 0 {
		return
	}
	c.noticed(changes)
	syncs, err := c.ssInformer.GetIndexer().ByIndex(spcIndex, n.GetNamespace()+"/"+n.GetName())
	if err != nil {
		return
	}
	for _, s := range syncs {
		if k, ok := keyOf(s); ok {
			c.markChanges(k, changes)
		}
	}
}

func (c *Controller) ssDeleted(obj any) {
	if key, ok := keyOf(obj); ok {
		c.forget(key)
	}
}

// forget drops a deleted SecretSync's state (the garbage collector deletes
// its Secret).
func (c *Controller) forget(key string) {
	c.mu.Lock()
	if st, ok := c.states[key]; ok {
		if st.poll != nil {
			st.poll.Stop()
		}
		delete(c.states, key)
	}
	c.mu.Unlock()
	c.queue.Forget(key)
}

// spcChanged syncs afresh every SecretSync that names the class (created,
// changed, recreated or deleted): upstream waits for its next poll.
func (c *Controller) spcChanged(obj any) {
	key, ok := keyOf(obj)
	if !ok {
		return
	}
	syncs, err := c.ssInformer.GetIndexer().ByIndex(spcIndex, key)
	if err != nil {
		return
	}
	for _, s := range syncs {
		if k, ok := keyOf(s); ok {
			c.mark(k, true)
		}
	}
}

// secretChanged queues the SecretSync owning an edited or deleted Secret,
// unless the Secret is exactly what the controller last wrote (its own
// write coming back).
func (c *Controller) secretChanged(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	owner := ownerSync(s)
	if owner == "" {
		return
	}
	key := s.Namespace + "/" + owner
	c.mu.Lock()
	st := c.states[key]
	mine := st != nil && st.applied != "" && st.applied == digestOf(s) && s.DeletionTimestamp == nil
	c.mu.Unlock()
	if !mine {
		c.mark(key, false)
	}
}

// mark records that key needs a sync from now (fresh: from the store
// itself) and queues it.
func (c *Controller) mark(key string, fresh bool) {
	now := c.cfg.Now()
	c.mu.Lock()
	st, ok := c.states[key]
	if !ok {
		st = &state{fresh: true}
		c.states[key] = st
	}
	if st.since.IsZero() {
		st.since = now
	}
	st.fresh = st.fresh || fresh
	c.mu.Unlock()
	c.queue.Add(key)
}

// markChanges records that key's objects named by changes are to be read
// afresh and queues it. The need starts now, later than any need pending:
// no answer from before the change may serve it.
func (c *Controller) markChanges(key string, changes []refresh.Change) {
	now := c.cfg.Now()
	c.mu.Lock()
	st, ok := c.states[key]
	if !ok {
		st = &state{fresh: true}
		c.states[key] = st
	}
	st.since = now
	for _, ch := range changes {
		st.changes, _ = refresh.Add(st.changes, ch)
	}
	c.mu.Unlock()
	c.queue.Add(key)
}

// schedulePoll queues key's next poll: one interval on, give or take a
// tenth, at an offset of its own (from its UID), so that SecretSyncs
// created together do not poll a vault in the same second.
func (c *Controller) schedulePoll(key, uid string) {
	if c.cfg.PollInterval <= 0 {
		return
	}
	h := fnv.New32a()
	h.Write([]byte(uid))
	h.Write([]byte(c.cfg.Now().String()))
	d := c.cfg.PollInterval*9/10 + time.Duration(h.Sum32()%1000)*c.cfg.PollInterval/5000
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.states[key]
	if !ok {
		return
	}
	if st.poll != nil {
		st.poll.Stop()
	}
	st.poll = time.AfterFunc(d, func() { c.mark(key, false) })
}

func (c *Controller) stopPolls() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.states {
		if st.poll != nil {
			st.poll.Stop()
		}
	}
}

// need is what the next sync of a SecretSync must meet.
type need struct {
	// since: only an answer from a provider call started at or after it
	// serves.
	since time.Time
	// fresh: no cache may serve it.
	fresh bool
	// changes are objects to read afresh (Key Vault announced new
	// versions); the others may be served as the versions synced.
	changes []refresh.Change
	// versions are the objects' versions last synced.
	versions map[string]string
}

// take returns key's need and clears it: a change after this point queues
// another sync.
func (c *Controller) take(key string) need {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.states[key]
	if !ok {
		st = &state{fresh: true}
		c.states[key] = st
	}
	n := need{since: st.since, fresh: st.fresh, changes: st.changes, versions: st.versions}
	if n.since.IsZero() {
		n.since = c.cfg.Now()
	}
	st.since, st.fresh, st.changes = time.Time{}, false, nil
	return n
}

// remember records a sync's outcome: the versions for the next poll, the
// digest of the Secret as it now is.
func (c *Controller) remember(key string, versions map[string]string, applied string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.states[key]; ok {
		st.versions, st.applied = versions, applied
	}
}

// refail puts back a need a failed sync did not meet, so that the retry
// is as fresh as the sync was meant to be.
func (c *Controller) refail(key string, n need) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.states[key]; ok {
		if st.since.IsZero() || (n.since.Before(st.since) && len(st.changes) == 0) {
			st.since = n.since
		}
		st.fresh = st.fresh || n.fresh
		for _, ch := range n.changes {
			st.changes, _ = refresh.Add(st.changes, ch)
		}
	}
}

// tracked is the number of SecretSyncs the controller keeps state for.
func (c *Controller) tracked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.states)
}

// ownerSync is the SecretSync a Secret's controller reference names.
func ownerSync(s *corev1.Secret) string {
	for _, r := range s.OwnerReferences {
		if r.Kind == ssv1.Kind && r.APIVersion == ssv1.APIVersion && r.Controller != nil && *r.Controller {
			return r.Name
		}
	}
	return ""
}

func keyOf(obj any) (string, bool) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	return key, err == nil
}
