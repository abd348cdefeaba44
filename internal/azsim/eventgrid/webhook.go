package eventgrid

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// retrySchedule is Event Grid's: 10 s, 30 s, 1 min, 5 min, 10 min, 30 min,
// 1 h, then every hour until the event's time to live or the attempts run
// out.
var retrySchedule = []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour}

func retryAfter(attempt int) time.Duration {
	if attempt-1 < len(retrySchedule) {
		return retrySchedule[attempt-1]
	}
	return time.Hour
}

// dropped are the webhook answers Event Grid does not retry (it
// dead-letters them when dead-lettering is set up, else drops them).
func dropped(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusUnauthorized || status == http.StatusRequestEntityTooLarge
}

// delivery is one event on its way to one webhook.
type delivery struct {
	ev      event
	attempt int // attempts made
	due     time.Time
	first   time.Time
}

// webhook delivers one subscription's events, one per request, in the
// order they are due.
type webhook struct {
	b   *Broker
	sub Subscription

	mu      sync.Mutex // guards pending, st and token
	pending []*delivery
	st      Stats
	token   string
	expires time.Time

	wake chan struct{}
	done chan struct{}
}

// webhookFor returns the running delivery of s, starting it.
func (b *Broker) webhookFor(s Subscription) *webhook {
	key := subscriptionKey(s.ResourceGroup, s.SystemTopic, s.Name)
	b.mu.Lock()
	defer b.mu.Unlock()
	if w, ok := b.webhooks[key]; ok {
		w.mu.Lock()
		w.sub = s
		w.mu.Unlock()
		return w
	}
	w := &webhook{b: b, sub: s, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if !b.closed {
		b.webhooks[key] = w
		go w.run()
	}
	return w
}

// dropWebhook stops a deleted subscription's delivery.
func (b *Broker) dropWebhook(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w, ok := b.webhooks[key]; ok {
		w.stop()
		delete(b.webhooks, key)
	}
}

func (w *webhook) stop() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
}

func (w *webhook) enqueue(ev event) {
	now := w.b.cfg.Now()
	w.mu.Lock()
	w.pending = append(w.pending, &delivery{ev: ev, due: now, first: now})
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *webhook) stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.st
	s.Pending = len(w.pending)
	return s
}

// run delivers what is due, waiting for the next due time or a new event.
func (w *webhook) run() {
	for {
		d, wait := w.next()
		if d != nil {
			w.attempt(d)
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-w.done:
			t.Stop()
			return
		case <-w.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// next takes the earliest due delivery, or says how long until one is.
func (w *webhook) next() (*delivery, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) == 0 {
		return nil, time.Hour
	}
	i := 0
	for j, d := range w.pending {
		if d.due.Before(w.pending[i].due) {
			i = j
		}
	}
	d := w.pending[i]
	if wait := d.due.Sub(w.b.cfg.Now()); wait > 0 {
		return nil, wait
	}
	w.pending = slices.Delete(w.pending, i, i+1)
	return d, 0
}

// attempt makes one delivery attempt and schedules what follows.
func (w *webhook) attempt(d *delivery) {
	w.mu.Lock()
	sub := w.sub
	w.mu.Unlock()
	status, err := w.post(sub, d)
	d.attempt++
	now := w.b.cfg.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.st.Attempts++
	switch {
	case err == nil && status >= 200 && status <= 204:
		w.st.Delivered++
		return
	case err == nil && dropped(status):
		w.st.Failed++
		w.st.Dropped++
		w.b.cfg.Logger.Info("event dropped: the webhook answered a status Event Grid does not retry", "subscription", sub.Name, "status", status, "id", d.ev.ID)
		return
	}
	w.st.Failed++
	ttl := time.Duration(orDefault(sub.EventTTLMinutes, 1440)) * time.Minute
	if d.attempt >= orDefault(sub.MaxDeliveryAttempts, 30) || now.Sub(d.first) >= w.b.scaled(ttl) {
		w.st.Dropped++
		return
	}
	d.due = now.Add(w.b.scaled(retryAfter(d.attempt)))
	w.pending = append(w.pending, d)
	w.b.cfg.Logger.Debug("webhook delivery failed; retrying", "subscription", sub.Name, "status", status, "err", err, "attempt", d.attempt, "in", d.due.Sub(now))
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// post sends one event in the subscription's schema with Event Grid's
// headers, and a bearer token when the webhook is Entra-protected.
func (w *webhook) post(sub Subscription, d *delivery) (int, error) {
	var body []byte
	contentType := "application/json"
	if sub.Schema == SchemaCloudEvents {
		body, _ = json.Marshal(cloudEventJSON(d.ev))
		contentType = "application/cloudevents+json; charset=utf-8"
	} else {
		body, _ = json.Marshal([]any{eventGridJSON(d.ev)})
	}
	ctx, cancel := ctxTimeout()
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.Endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", contentType)
	w.headers(req, sub, "Notification", d.attempt)
	if err := w.authorize(req, sub); err != nil {
		return 0, err
	}
	resp, err := w.b.cfg.Client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// headers sets the aeg-* headers of a delivery.
func (w *webhook) headers(req *http.Request, sub Subscription, eventType string, count int) {
	req.Header.Set("aeg-event-type", eventType)
	req.Header.Set("aeg-subscription-name", strings.ToUpper(sub.Name))
	req.Header.Set("aeg-delivery-count", strconv.Itoa(count))
	req.Header.Set("aeg-data-version", "1")
	req.Header.Set("aeg-metadata-version", "1")
	req.Header.Set("User-Agent", "AzureEventGrid/1.0 (azsim)")
}

// authorize adds Event Grid's Entra token for the webhook's app.
func (w *webhook) authorize(req *http.Request, sub Subscription) error {
	tok, err := w.b.deliveryToken(sub, &w.mu, &w.token, &w.expires)
	if err != nil || tok == "" {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

// deliveryToken returns a token of Event Grid's app for sub's Entra app,
// cached in *tok until shortly before *exp; "" when sub is not
// Entra-protected.
func (b *Broker) deliveryToken(sub Subscription, mu *sync.Mutex, tok *string, exp *time.Time) (string, error) {
	if sub.AADAppIDOrURI == "" {
		return "", nil
	}
	mu.Lock()
	defer mu.Unlock()
	now := b.cfg.Now()
	if *tok != "" && now.Before(exp.Add(-5*time.Minute)) {
		return *tok, nil
	}
	t, err := b.cfg.Tokens.IssueApp(sub.AADTenantID, EventGridAppID, eventGridObjectID(sub.AADTenantID), sub.AADAppIDOrURI, time.Hour)
	if err != nil {
		return "", err
	}
	*tok, *exp = t, now.Add(time.Hour)
	return t, nil
}

// eventGridObjectID is Event Grid's service principal in a tenant: fixed
// per tenant, as a first-party app's is.
func eventGridObjectID(tenant string) string {
	h := strings.ReplaceAll(strings.ToLower(tenant), "-", "")
	if len(h) < 32 {
		h += strings.Repeat("0", 32-len(h))
	}
	h = "e" + h[1:32]
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
