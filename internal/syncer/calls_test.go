package syncer

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCallsServeOnlyLaterNeeds: an answer serves the needs that arose
// before its call started (those joining within the linger share it), never
// a need that arose after; a need for fresh data is not served by a poll's
// answer, while a poll is served by a fresh one.
func TestCallsServeOnlyLaterNeeds(t *testing.T) {
	var made atomic.Int32
	do := func(fresh bool) func(context.Context, time.Time) *answer {
		return func(context.Context, time.Time) *answer {
			made.Add(1)
			time.Sleep(20 * time.Millisecond)
			return &answer{files: map[string][]byte{"f": []byte("x")}}
		}
	}
	cs := newCalls(time.Now, 50*time.Millisecond)
	ctx := context.Background()
	since := time.Now()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { cs.get(ctx, "k", since, true, do(true)) })
	}
	wg.Wait()
	if n := made.Load(); n != 1 {
		t.Fatalf("%d calls for 10 needs that arose together, want 1", n)
	}
	cs.get(ctx, "k", since, false, do(false)) // a poll needing no more than that answer
	if n := made.Load(); n != 1 {
		t.Fatalf("a poll from before the answer made a call (%d)", n)
	}
	cs.get(ctx, "k", time.Now(), true, do(true)) // a need that arose after the answer's call began
	if n := made.Load(); n != 2 {
		t.Fatalf("a later need was served by an earlier answer (%d calls)", n)
	}
	cs.get(ctx, "poll", time.Now(), false, do(false))
	cs.get(ctx, "poll", time.Now().Add(-time.Hour), true, do(true)) // fresh, older need: a poll's answer does not do
	if n := made.Load(); n != 4 {
		t.Fatalf("a need for fresh data was served by a poll's answer (%d calls)", n)
	}
}
