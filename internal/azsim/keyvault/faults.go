package keyvault

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Fault makes matching authenticated requests slow or fail the way Key
// Vault does under load or trouble, so that clients' handling of it can be
// tested: one slow object, a 429 with a long Retry-After, a 503.
type Fault struct {
	Vault string
	// Object limits the fault to one object name; empty: every object.
	Object string
	// Delay is added before the answer.
	Delay time.Duration
	// Status, when set, is the answer (after Delay) instead of the real one.
	Status int
	// RetryAfter goes with a 429.
	RetryAfter time.Duration
	// Times is how many requests the fault applies to; zero: all.
	Times int
}

type faults struct {
	mu   sync.Mutex // guards list
	list []*activeFault
}

type activeFault struct {
	Fault
	hits int
}

// Inject adds a fault; the returned function removes it.
func (h *Handler) Inject(f Fault) (remove func()) {
	af := &activeFault{Fault: f}
	h.faults.mu.Lock()
	h.faults.list = append(h.faults.list, af)
	h.faults.mu.Unlock()
	return func() {
		h.faults.mu.Lock()
		defer h.faults.mu.Unlock()
		for i, x := range h.faults.list {
			if x == af {
				h.faults.list = append(h.faults.list[:i], h.faults.list[i+1:]...)
				return
			}
		}
	}
}

// fault applies the first fault matching (vault, object): it sleeps its
// delay and returns the error to answer with, if any.
func (h *Handler) fault(ctx context.Context, vault, object string) error {
	h.faults.mu.Lock()
	var f *Fault
	for _, af := range h.faults.list {
		if !strings.EqualFold(af.Vault, vault) || (af.Object != "" && !strings.EqualFold(af.Object, object)) {
			continue
		}
		if af.Times > 0 && af.hits >= af.Times {
			continue
		}
		af.hits++
		cp := af.Fault
		f = &cp
		break
	}
	h.faults.mu.Unlock()
	if f == nil {
		return nil
	}
	if err := sleep(ctx, f.Delay); err != nil {
		return err
	}
	switch f.Status {
	case 0:
		return nil
	case http.StatusTooManyRequests:
		h.count(vault, func(s *Stats) { s.Throttled++ })
		secs := int((f.RetryAfter + time.Second - 1) / time.Second)
		return &apiError{status: f.Status, code: "Throttled", msg: "Request was not processed because too many requests were received. Reason: A1",
			header: map[string]string{"Retry-After": itoa(secs)}}
	}
	return &apiError{status: f.Status, code: "ServiceUnavailable", msg: "azsim: injected fault"}
}
