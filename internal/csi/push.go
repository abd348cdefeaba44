package csi

import (
	"context"
	"time"

	"kvmount.dev/kvmount/internal/refresh"
)

// Pushed refreshes. Kubelet republishes each volume about once a minute,
// and the driver refreshes it once per rotation poll; a change Key Vault
// announces (recorded on the class by the sync controller) or a refresh a
// user asks for does not wait for either: the driver refreshes its own
// volumes of the class at once, with the mount request kubelet last sent
// (the pod's current service-account tokens), telling the provider which
// objects to read afresh. Everything else is a publish as kubelet's: the
// same identity checks, the same atomic write, the same status, events and
// metrics; a failure keeps the files and is told to the pod, and the next
// republish tries again.

// maxPushes bounds the refreshes a node runs at once: most of a refresh
// is waiting (the provider, the API server).
const maxPushes = 8

// classChanged queues a refresh of every volume of class ns/name this node
// mounts: of the objects changes names, or (requested) of every object.
// Changes need rotation on (upstream's --enable-secret-rotation: without
// it files never change after the mount); a request is the user's own and
// is served either way.
func (d *Driver) classChanged(ns, name string, changes []refresh.Change, requested bool) {
	if !d.cfg.Rotation && !requested {
		return
	}
	r := refresh.Request{Since: d.cfg.Now(), All: true}
	if !requested {
		r = refresh.Request{Since: d.noticed(changes), Changes: changes}
	}
	d.mu.Lock()
	var ids []string
	for id, v := range d.volumes {
		if v.dropped || v.last == nil || v.last.pod.namespace != ns || v.last.class != name {
			continue
		}
		if v.pending == nil {
			ids = append(ids, id)
			v.pending = &r
			continue
		}
		merged := v.pending.Merge(r)
		v.pending = &merged
	}
	d.mu.Unlock()
	for _, id := range ids {
		go d.push(id)
	}
}

// noticed is when this node first saw the latest of changes. Every class
// that records a change (several may read one object) refreshes with that
// same time, so that the provider's read for one class — begun after it —
// serves the others of the same principal: one read per principal on the
// node, not one per class.
func (d *Driver) noticed(changes []refresh.Change) time.Time {
	var latest time.Time
	for _, c := range changes {
		t, _ := d.seen.GetOrAdd(c.ID, func() (time.Time, error) { return d.cfg.Now(), nil })
		if t.After(latest) {
			latest = t
		}
	}
	return latest
}

// push runs volume id's pending refresh, if the volume is still there.
func (d *Driver) push(id string) {
	d.pushes <- struct{}{}
	defer func() { <-d.pushes }()
	v := d.hold(id)
	if v == nil {
		return
	}
	d.mu.Lock()
	r, last := v.pending, v.last
	v.pending = nil
	d.mu.Unlock()
	if r == nil || last == nil {
		d.release(id, v, true)
		return
	}
	m := *last
	m.refresh = r
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.ProviderTimeout+10*time.Second)
	defer cancel()
	start := d.cfg.Now()
	res, err := d.publish(ctx, m, v)
	// A pushed refresh never unmounts: a failure keeps the files (publish
	// reports it to the pod), and the state stays for kubelet's calls.
	d.release(id, v, true)
	err = toStatus(err, m)
	d.record(m, res, err, d.cfg.Now().Sub(start))
}

// hold returns volume id's state, locked, if the driver has it.
func (d *Driver) hold(id string) *volume {
	d.mu.Lock()
	v, ok := d.volumes[id]
	if !ok || v.dropped {
		d.mu.Unlock()
		return nil
	}
	v.refs++
	d.mu.Unlock()
	v.mu.Lock()
	return v
}

// trigger names what started a refresh, for metrics.
func trigger(m mountRequest) string {
	switch {
	case m.refresh == nil:
		return triggerPoll
	case m.refresh.All:
		return triggerRequest
	}
	return triggerEvent
}

// landed observes, for a pushed refresh that changed the files, how long
// each change it carried took from Key Vault to here.
func (d *Driver) landed(m mountRequest) {
	if m.refresh == nil {
		return
	}
	now := d.cfg.Now()
	for _, c := range m.refresh.Changes {
		if !c.Time.IsZero() {
			d.cfg.Metrics.changeLanded(now.Sub(c.Time))
		}
	}
}
