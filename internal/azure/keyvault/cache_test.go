package keyvault

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"kvmount.dev/kvmount/internal/epoch"
)

// TestEpochCache: a read is served within its epoch only, and a read that
// began in the previous epoch is not stored (it may predate a change).
func TestEpochCache(t *testing.T) {
	c := newEpochCache(epoch.Clock{Period: time.Minute})
	t0 := time.Unix(6000, 0) // an epoch start
	c.put("k", "v1", t0, t0.Add(time.Second))
	if v, ok := c.get("k", t0.Add(59*time.Second), time.Time{}); !ok || v != "v1" {
		t.Fatalf("same epoch: %v %v", v, ok)
	}
	if v, ok := c.get("k", t0.Add(59*time.Second), t0); !ok || v != "v1" {
		t.Fatalf("a read begun at since: %v %v", v, ok)
	}
	if _, ok := c.get("k", t0.Add(59*time.Second), t0.Add(time.Nanosecond)); ok {
		t.Fatal("served a read begun before since")
	}
	if _, ok := c.get("k", t0.Add(61*time.Second), time.Time{}); ok {
		t.Fatal("served in the next epoch")
	}
	c.put("k", "late", t0.Add(59*time.Second), t0.Add(61*time.Second))
	if _, ok := c.get("k", t0.Add(62*time.Second), time.Time{}); ok {
		t.Fatal("stored a read begun in the previous epoch")
	}
	off := newEpochCache(epoch.Clock{})
	off.put("k", "v", t0, t0)
	if _, ok := off.get("k", t0, time.Time{}); ok {
		t.Fatal("a zero period must disable the cache")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tests := []struct {
		header, value string
		want          time.Duration
	}{
		{"Retry-After", "30", 30 * time.Second},
		{"Retry-After", now.Add(12 * time.Second).UTC().Format(http.TimeFormat), 12 * time.Second},
		{"Retry-After-Ms", "1500", 1500 * time.Millisecond},
		{"X-Ms-Retry-After-Ms", "250", 250 * time.Millisecond},
		{"Retry-After", "soon", defaultRetryAfter},
		{"", "", defaultRetryAfter},
		{"Retry-After", "86400", maxRetryAfter},
		{"Retry-After", "9223372036854775807", maxRetryAfter},
		{"Retry-After-Ms", "9223372036854775", maxRetryAfter},
		{"Retry-After", now.Add(48 * time.Hour).UTC().Format(http.TimeFormat), maxRetryAfter},
	}
	for _, tt := range tests {
		resp := &http.Response{Header: http.Header{}}
		if tt.header != "" {
			resp.Header.Set(tt.header, tt.value)
		}
		if got := retryAfter(resp, now); got != tt.want {
			t.Errorf("%s: %s → %s, want %s", tt.header, tt.value, got, tt.want)
		}
	}
}

// FuzzRetryAfter: whatever the headers say, the delay is positive and at
// most maxRetryAfter.
func FuzzRetryAfter(f *testing.F) {
	f.Add("30", "", "")
	f.Add("Wed, 21 Oct 2015 07:28:00 GMT", "1500", "")
	f.Add("", "", "9223372036854775807")
	f.Fuzz(func(t *testing.T, ra, ms, xms string) {
		resp := &http.Response{Header: http.Header{}}
		resp.Header.Set("Retry-After", ra)
		resp.Header.Set("Retry-After-Ms", ms)
		resp.Header.Set("X-Ms-Retry-After-Ms", xms)
		if d := retryAfter(resp, time.Unix(1_000_000, 0)); d <= 0 || d > maxRetryAfter {
			t.Fatalf("Retry-After %q, -Ms %q, X-Ms- %q: %s", ra, ms, xms, d)
		}
	})
}

// TestGate: a closed gate makes callers wait when its deadline allows, and
// refuses at once when it does not.
func TestGate(t *testing.T) {
	var g gate
	g.block(time.Now().Add(200 * time.Millisecond))
	start := time.Now()
	if err := g.wait(context.Background(), "kv", time.Now); err != nil || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("wait: %v after %s", err, time.Since(start))
	}
	g.block(time.Now().Add(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var te *ThrottledError
	if err := g.wait(ctx, "kv", time.Now); !errors.As(err, &te) {
		t.Fatalf("a gate closed past the deadline: %v", err)
	}
}

// TestClientsBounded: SDK clients are kept per (vault, principal) up to the
// bound, so principals seen once do not stay in memory.
func TestClientsBounded(t *testing.T) {
	f := New(Options{MaxClients: 50})
	for i := range 1000 {
		req := Request{VaultURL: "https://kv1.vault.azure.net"}
		req.Principal.ObjectID = string(rune('a'+i%26)) + time.Duration(i).String()
		if _, err := f.clientsFor(req); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.clients.Len(); n != 50 {
		t.Errorf("%d clients kept for 1000 principals, want the bound 50", n)
	}
}

// TestPerVaultStateBounded: the per-vault state the fetcher keeps does
// not grow with the vaults classes name. A vault's request slots go when
// its last request leaves (also one that gave up waiting); its throttle
// gates are bounded and leave when idle.
func TestPerVaultStateBounded(t *testing.T) {
	now := time.Unix(2_000_000_000, 0)
	f := New(Options{PerVault: 1, MaxClients: 50, Now: func() time.Time { return now }})
	ctx := context.Background()
	for i := range 1000 {
		vault := "https://v" + string(rune('a'+i%26)) + time.Duration(i).String() + ".vault.azure.net"
		if err := f.acquire(ctx, vault); err != nil {
			t.Fatal(err)
		}
		f.release(vault)
		f.gate(vault)
	}
	if err := f.acquire(ctx, "https://busy.vault.azure.net"); err != nil {
		t.Fatal(err)
	}
	gaveUp, cancel := context.WithCancel(ctx)
	cancel()
	if err := f.acquire(gaveUp, "https://busy.vault.azure.net"); err == nil {
		t.Fatal("a second request got the busy vault's only slot")
	}
	f.release("https://busy.vault.azure.net")
	f.mu.Lock()
	n := len(f.sems)
	f.mu.Unlock()
	if n != 0 {
		t.Errorf("%d vaults' slots kept with no request in flight, want 0", n)
	}
	if g := f.gates.Len(); g != 50 {
		t.Errorf("%d throttle gates for 1000 vaults, want the bound 50", g)
	}
	now = now.Add(2 * time.Hour)
	if g := f.gates.Len(); g != 0 {
		t.Errorf("%d throttle gates after two idle hours, want 0", g)
	}
}
