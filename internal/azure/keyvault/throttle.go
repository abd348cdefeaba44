package keyvault

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"kvmount.dev/kvmount/internal/flight"
)

// gate is one vault's throttle state on this node. When Key Vault answers
// 429 it says, in Retry-After, when to come back; every request to that
// vault — of every mount, every principal — waits until then, instead of
// each mount retrying on its own schedule and adding to the load that got
// the vault throttled.
type gate struct {
	mu    sync.Mutex // guards until
	until time.Time
}

// ThrottledError is a request not sent because the vault asked to be left
// alone until after the mount's deadline.
type ThrottledError struct {
	Vault string
	Until time.Time
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("key vault %s is throttling requests (429) until %s, after this mount's deadline", e.Vault, e.Until.UTC().Format(time.RFC3339))
}

// block closes the gate until t (it never shortens a wait).
func (g *gate) block(t time.Time) {
	g.mu.Lock()
	if t.After(g.until) {
		g.until = t
	}
	g.mu.Unlock()
}

// wait returns when the gate is open, or at once with a ThrottledError when
// it opens only after ctx's deadline.
func (g *gate) wait(ctx context.Context, vault string, now func() time.Time) error {
	g.mu.Lock()
	until := g.until
	g.mu.Unlock()
	d := until.Sub(now())
	if d <= 0 {
		return nil
	}
	if dl, ok := flight.Deadline(ctx); ok && until.After(dl) {
		return &ThrottledError{Vault: vault, Until: until}
	}
	// Waiters spread over a fraction of a second so that they do not all
	// come back in the same instant.
	d += time.Duration(rand.Int64N(int64(250 * time.Millisecond)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// throttlePolicy is the SDK pipeline policy in front of the retry policy
// (which is told not to retry 429s): it waits at the vault's gate, and on a
// 429 closes the gate for Retry-After and tries again, for as long as the
// request's deadline allows and at most maxThrottleTries times.
type throttlePolicy struct {
	vault string
	g     *gate
	now   func() time.Time
}

const maxThrottleTries = 6

// defaultRetryAfter is assumed when a 429 names no delay.
const defaultRetryAfter = 5 * time.Second

func (p *throttlePolicy) Do(req *policy.Request) (*http.Response, error) {
	ctx := req.Raw().Context()
	for try := 1; ; try++ {
		if err := p.g.wait(ctx, p.vault, p.now); err != nil {
			return nil, err
		}
		if err := req.RewindBody(); err != nil {
			return nil, err
		}
		resp, err := req.Clone(ctx).Next()
		if err != nil || resp.StatusCode != http.StatusTooManyRequests {
			return resp, err
		}
		p.g.block(p.now().Add(retryAfter(resp, p.now())))
		if try == maxThrottleTries {
			return resp, nil
		}
		runtime.Drain(resp)
	}
}

// maxRetryAfter caps what a 429 can ask for. Key Vault asks for seconds;
// a value of hours (or one that overflows) from a broken proxy would
// otherwise shut the vault off for every mount on the node until the
// provider restarts.
const maxRetryAfter = 5 * time.Minute

// retryAfter reads the delay a 429 asks for: Key Vault's retry-after-ms
// headers or Retry-After in seconds or as an HTTP date, at most
// maxRetryAfter.
func retryAfter(resp *http.Response, now time.Time) time.Duration {
	for _, h := range []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if ms, err := strconv.ParseInt(resp.Header.Get(h), 10, 64); err == nil && ms > 0 {
			return capRetry(ms, time.Millisecond)
		}
	}
	v := resp.Header.Get("Retry-After")
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s > 0 {
		return capRetry(s, time.Second)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return defaultRetryAfter
}

// capRetry is n units, at most maxRetryAfter (checked before multiplying,
// which could overflow).
func capRetry(n int64, unit time.Duration) time.Duration {
	if n > int64(maxRetryAfter/unit) {
		return maxRetryAfter
	}
	return time.Duration(n) * unit
}
