// Package flight coalesces identical calls in flight: the first caller of
// a key starts the call, later callers wait for its result. The call runs
// on a context of its own — the first caller's values (its credential)
// without its cancellation, and a deadline of its own — so that one caller
// failing or giving up (another of its objects was missing, kubelet's
// deadline passed) never fails another that joined the call. Each caller
// waits on its own context.
package flight

import (
	"context"
	"sync"
	"time"
)

// Group runs calls of one kind, at most one per key at a time.
type Group[V any] struct {
	// Timeout bounds one call.
	Timeout time.Duration
	// OnJoin, if set, runs whenever a caller joins a call in flight.
	OnJoin func()

	mu sync.Mutex // guards m
	m  map[string]*call[V]
}

type call[V any] struct {
	done chan struct{}
	val  V
	err  error
}

// Do returns fn's result for key, running fn once for every caller that
// arrives while it runs.
func (g *Group[V]) Do(ctx context.Context, key string, fn func(context.Context) (V, error)) (V, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[string]*call[V]{}
	}
	c, joined := g.m[key]
	if !joined {
		c = &call[V]{done: make(chan struct{})}
		g.m[key] = c
		go g.run(ctx, key, c, fn)
	}
	g.mu.Unlock()
	if joined && g.OnJoin != nil {
		g.OnJoin()
	}
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

func (g *Group[V]) run(parent context.Context, key string, c *call[V], fn func(context.Context) (V, error)) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), g.Timeout)
	defer cancel()
	if dl, ok := parent.Deadline(); ok {
		ctx = context.WithValue(ctx, softDeadlineKey{}, dl)
	}
	c.val, c.err = fn(ctx)
	g.mu.Lock()
	delete(g.m, key)
	g.mu.Unlock()
	close(c.done)
}

type softDeadlineKey struct{}

// Deadline is when the caller that started a call must be done: its own
// deadline, which the shared call does not inherit (so that the caller
// giving up does not end it) but may consult to decide whether waiting
// (for a throttled service, say) can help anyone. Outside a call it is
// ctx's deadline.
func Deadline(ctx context.Context) (time.Time, bool) {
	if dl, ok := ctx.Value(softDeadlineKey{}).(time.Time); ok {
		return dl, true
	}
	return ctx.Deadline()
}
