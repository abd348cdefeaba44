package keyvault

import (
	"sync"
	"time"

	"kvmount.dev/kvmount/internal/epoch"
)

// epochCache is the node cache. Time is cut into epochs of one rotation
// poll interval, offset per node (phase) so that nodes do not all read a
// vault in the same second. An object read during an epoch is served to
// republishes (rotations) in the same epoch only: the driver refreshes each
// volume once per epoch, so the first volume of an epoch reads Key Vault
// and every other volume of the same principal reuses that read — one read
// per (principal, object) per poll — and no read outlives its epoch, so a
// new version reaches every pod by the first refresh of the next epoch.
// First mounts never read from it (Fetcher.load).
type epochCache struct {
	clock epoch.Clock
	max   int

	mu    sync.Mutex // guards epoch and m
	epoch int64
	m     map[string]cached
}

// cached is one read and when it began.
type cached struct {
	v       any
	started time.Time
}

// maxCache bounds one epoch's entries; past it, reads are not stored.
const maxCache = 50000

func newEpochCache(clock epoch.Clock) *epochCache {
	return &epochCache{clock: clock, max: maxCache, m: map[string]cached{}}
}

func (c *epochCache) enabled() bool { return c.clock.Period > 0 }

// roll drops the previous epoch's entries when now is in a new one; c.mu
// is held.
func (c *epochCache) roll(now time.Time) int64 {
	e := c.clock.Of(now)
	if e != c.epoch {
		c.epoch, c.m = e, map[string]cached{}
	}
	return e
}

// get returns this epoch's read of key if it began at since or later
// (a zero since takes any).
func (c *epochCache) get(key string, now, since time.Time) (any, bool) {
	if !c.enabled() {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roll(now)
	e, ok := c.m[key]
	if !ok || e.started.Before(since) {
		return nil, false
	}
	return e.v, true
}

// put stores a read that started at started; a read begun in an earlier
// epoch than now's is not stored, as it may predate a change made since.
func (c *epochCache) put(key string, v any, started, now time.Time) {
	if !c.enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.roll(now) != c.clock.Of(started) || len(c.m) >= c.max {
		return
	}
	c.m[key] = cached{v: v, started: started}
}
