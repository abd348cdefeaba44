package csi

import (
	"context"
	"sync"
	"time"
)

// reporter writes what pushed refreshes leave to tell — each volume's
// status object (its new versions) and the pod's SecretRotationComplete
// Event — once the node's refreshes have gone quiet for reportQuiet (at
// most reportMaxDelay after the first), so that a change's file writes on
// every node are not queued behind hundreds of status writes at the API
// server. Upstream's rotation writes the same objects; they come a moment
// later.
type reporter struct {
	d *Driver

	mu      sync.Mutex      // guards the fields below
	pending map[string]bool // volume ID → its files changed
	first   time.Time
	timer   *time.Timer
}

const (
	reportQuiet    = 300 * time.Millisecond
	reportMaxDelay = 3 * time.Second
	// reportWorkers write one node's reports at once.
	reportWorkers = 4
)

// add queues volume id's report; changed says its files changed.
func (r *reporter) add(id string, changed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[string]bool{}
	}
	now := time.Now()
	if len(r.pending) == 0 {
		r.first = now
	}
	r.pending[id] = r.pending[id] || changed
	wait := min(reportQuiet, r.first.Add(reportMaxDelay).Sub(now))
	if r.timer == nil {
		r.timer = time.AfterFunc(wait, r.flush)
		return
	}
	r.timer.Reset(max(wait, 0))
}

// flush writes every pending report.
func (r *reporter) flush() {
	r.mu.Lock()
	pending := r.pending
	r.pending = nil
	r.mu.Unlock()
	sem := make(chan struct{}, reportWorkers)
	var wg sync.WaitGroup
	for id, changed := range pending {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			r.d.report(id, changed)
		})
	}
	wg.Wait()
}

// report writes volume id's status object if it is not up to date and,
// when its files changed, tells the pod; nothing if the volume is gone.
func (d *Driver) report(id string, changed bool) {
	v := d.hold(id)
	if v == nil {
		return
	}
	defer d.release(id, v, true)
	d.mu.Lock()
	last := v.last
	d.mu.Unlock()
	if last == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !v.statusDone {
		d.updateStatus(ctx, *last, v)
	}
	if changed {
		d.rotationComplete(ctx, *last)
	}
}
