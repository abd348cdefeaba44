package flight

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGroup: concurrent callers share one run; the run continues when the
// caller that started it gives up, and the others get its result.
func TestGroup(t *testing.T) {
	var joined atomic.Int64
	g := &Group[string]{Timeout: time.Minute, OnJoin: func() { joined.Add(1) }}
	var runs atomic.Int64
	release := make(chan struct{})
	fn := func(ctx context.Context) (string, error) {
		runs.Add(1)
		select {
		case <-release:
			return "ok", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	leader, cancel := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() { _, err := g.Do(leader, "k", fn); leaderErr <- err }()
	for runs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	results := make([]string, 5)
	for i := range results {
		wg.Go(func() { results[i], _ = g.Do(context.Background(), "k", fn) })
	}
	for joined.Load() < 5 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader: %v", err)
	}
	close(release)
	wg.Wait()
	for i, r := range results {
		if r != "ok" {
			t.Errorf("caller %d got %q after the leader gave up", i, r)
		}
	}
	if runs.Load() != 1 {
		t.Errorf("%d runs for 6 callers", runs.Load())
	}
}

// TestDeadline: a call sees its starter's deadline as a soft one, not as
// its own cancellation.
func TestDeadline(t *testing.T) {
	g := &Group[bool]{Timeout: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	want, _ := ctx.Deadline()
	ok, err := g.Do(ctx, "k", func(ctx context.Context) (bool, error) {
		soft, ok := Deadline(ctx)
		own, _ := ctx.Deadline()
		return ok && soft.Equal(want) && own.Before(want), nil
	})
	if err != nil || !ok {
		t.Fatal("the call's soft deadline is not its starter's, or its own deadline is not the group's timeout")
	}
}
