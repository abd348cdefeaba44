package eventgrid

import (
	"crypto/rand"
	"encoding/base64"
	"strings"
	"sync"
	"time"

	"kvmount.dev/kvmount/internal/azsim/store"
)

// queued is one event in a queue subscription.
type queued struct {
	ce        map[string]any // the CloudEvent
	available time.Time      // not handed out before
	lockToken string         // "" when not locked
	lockUntil time.Time
	count     int // times handed out
	enqueued  time.Time
}

// queue is one namespace topic subscription's events.
type queue struct {
	b   *Broker
	sub QueueSubscription

	mu     sync.Mutex // guards the fields below
	events []*queued
	st     Stats
	// arrived wakes receivers waiting in a long poll.
	arrived chan struct{}
	closed  bool
}

// eventRetention is how long an unsettled event stays (the namespace
// topic's eventRetentionInDays default, one day).
const eventRetention = 24 * time.Hour

// queueFor returns the queue of a stored subscription, making it.
func (b *Broker) queueFor(s QueueSubscription) *queue {
	key := queueKey(s.Namespace, s.Topic, s.Name)
	b.mu.Lock()
	defer b.mu.Unlock()
	q, ok := b.queues[key]
	if !ok {
		q = &queue{b: b, sub: s, arrived: make(chan struct{})}
		if !b.closed {
			b.queues[key] = q
		}
	}
	q.mu.Lock()
	q.sub = s
	q.mu.Unlock()
	return q
}

func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.arrived)
	}
}

// add appends a CloudEvent and wakes the receivers.
func (q *queue) add(ce map[string]any) {
	now := q.b.cfg.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.events = append(q.events, &queued{ce: ce, available: now, enqueued: now})
	close(q.arrived)
	q.arrived = make(chan struct{})
}

// toNamespaceTopic delivers ev to every subscription of a namespace topic
// (named by its resource ID) whose filter it passes.
func (b *Broker) toNamespaceTopic(topicID string, ev event) {
	ns, topic, ok := parseTopicID(topicID)
	if !ok {
		return
	}
	b.publishToTopic(ns, topic, []map[string]any{cloudEventJSON(ev)})
}

// publishToTopic adds CloudEvents to every subscription of ns/topic.
func (b *Broker) publishToTopic(ns, topic string, ces []map[string]any) {
	var subs []QueueSubscription
	_ = b.cfg.DB.View(func(tx *store.Tx) error {
		var err error
		subs, err = store.List[QueueSubscription](tx, bucketNSSubs, store.Path(ns, topic)+"/")
		return err
	})
	for _, s := range subs {
		q := b.queueFor(s)
		for _, ce := range ces {
			typ, _ := ce["type"].(string)
			if len(s.IncludedEventTypes) == 0 || containsFold(s.IncludedEventTypes, typ) {
				q.add(ce)
			}
		}
	}
}

// parseTopicID reads /subscriptions/…/namespaces/<ns>/topics/<topic>.
func parseTopicID(id string) (ns, topic string, ok bool) {
	parts := strings.Split(strings.Trim(id, "/"), "/")
	for i := 0; i+3 < len(parts); i++ {
		if strings.EqualFold(parts[i], "namespaces") && strings.EqualFold(parts[i+2], "topics") {
			return strings.ToLower(parts[i+1]), strings.ToLower(parts[i+3]), true
		}
	}
	return "", "", false
}

// expire returns events whose lock ran out to the queue — or dead-letters
// them once handed out MaxDeliveryCount times — and drops events past the
// retention; q.mu is held.
func (q *queue) expire(now time.Time) {
	kept := q.events[:0]
	for _, e := range q.events {
		if e.lockToken != "" && !now.Before(e.lockUntil) {
			e.lockToken = ""
			q.st.LockExpired++
			if e.count >= orDefault(q.sub.MaxDeliveryCount, 10) {
				q.st.DeadLettered++
				continue
			}
			e.available = now
		}
		if now.Sub(e.enqueued) > q.b.scaled(eventRetention) {
			continue
		}
		kept = append(kept, e)
	}
	q.events = kept
}

// receivedEvent is one event handed out.
type receivedEvent struct {
	LockToken     string
	DeliveryCount int
	CE            map[string]any
}

// receive hands out up to max available events, locking each, waiting up
// to wait for the first.
func (q *queue) receive(max int, wait time.Duration, cancelled <-chan struct{}) []receivedEvent {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		now := q.b.cfg.Now()
		q.mu.Lock()
		q.expire(now)
		var out []receivedEvent
		var next time.Time
		for _, e := range q.events {
			if len(out) == max {
				break
			}
			if e.lockToken != "" {
				if next.IsZero() || e.lockUntil.Before(next) {
					next = e.lockUntil
				}
				continue
			}
			if e.available.After(now) {
				if next.IsZero() || e.available.Before(next) {
					next = e.available
				}
				continue
			}
			e.count++
			e.lockToken = newLockToken()
			e.lockUntil = now.Add(q.lock())
			q.st.Received++
			out = append(out, receivedEvent{LockToken: e.lockToken, DeliveryCount: e.count, CE: e.ce})
		}
		arrived, closed := q.arrived, q.closed
		q.mu.Unlock()
		if len(out) > 0 || closed {
			return out
		}
		if !q.wait(arrived, next, now, deadline.C, cancelled) {
			return nil
		}
	}
}

// wait waits for an arrival, the next lock expiry or delayed event
// (next), the deadline or a cancellation; false when the receive ends.
func (q *queue) wait(arrived <-chan struct{}, next, now time.Time, deadline <-chan time.Time, cancelled <-chan struct{}) bool {
	var soon <-chan time.Time
	if !next.IsZero() {
		t := time.NewTimer(max(next.Sub(now), time.Millisecond))
		defer t.Stop()
		soon = t.C
	}
	select {
	case <-arrived:
	case <-soon:
	case <-deadline:
		return false
	case <-cancelled:
		return false
	}
	return true
}

// lock is the subscription's lock duration on the broker's time scale.
func (q *queue) lock() time.Duration {
	return q.b.scaled(time.Duration(orDefault(q.sub.LockSeconds, 60)) * time.Second)
}

func newLockToken() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// settle applies op to each lock token: acknowledge and reject remove the
// event, release makes it available again after delay, renew extends the
// lock. Tokens that are unknown or whose lock expired fail.
func (q *queue) settle(op string, tokens []string, delay time.Duration) (ok []string, failed []string) {
	now := q.b.cfg.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expire(now)
	for _, tok := range tokens {
		i := q.find(tok)
		if i < 0 {
			failed = append(failed, tok)
			continue
		}
		e := q.events[i]
		switch op {
		case "acknowledge":
			q.events = append(q.events[:i], q.events[i+1:]...)
			q.st.Acknowledged++
		case "reject":
			q.events = append(q.events[:i], q.events[i+1:]...)
			q.st.Rejected++
			q.st.DeadLettered++
		case "release":
			e.lockToken, e.available = "", now.Add(delay)
			q.st.Released++
		case "renewLock":
			e.lockUntil = now.Add(q.lock())
		}
		ok = append(ok, tok)
	}
	if op == "release" {
		close(q.arrived)
		q.arrived = make(chan struct{})
	}
	return ok, failed
}

func (q *queue) find(tok string) int {
	for i, e := range q.events {
		if e.lockToken != "" && e.lockToken == tok {
			return i
		}
	}
	return -1
}

func (q *queue) stats() Stats {
	now := q.b.cfg.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expire(now)
	s := q.st
	for _, e := range q.events {
		if e.lockToken != "" {
			s.Locked++
		} else {
			s.Available++
		}
	}
	return s
}
