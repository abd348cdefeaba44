package changefeed

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"kvmount.dev/kvmount/internal/azure/kvevents"
)

// Verifier checks a bearer token (entraauth.Verifier).
type Verifier interface {
	Verify(ctx context.Context, token string) error
}

// Webhook receives Event Grid's deliveries over HTTPS, in either schema,
// and answers both validation handshakes. Every request but CloudEvents'
// OPTIONS handshake (which changes nothing) must authenticate: with Event
// Grid's Entra token (Bearer), or with the shared key in the endpoint's
// query (?key=), whichever is configured; there is no unauthenticated
// mode. Answers follow Event Grid's retry rules: 200 for a delivery
// handled, 400 for one that will never be (Event Grid drops it), 401 for a
// refused caller, 503 when the classes could not be written (Event Grid
// retries).
type Webhook struct {
	Feed   *Feed
	Bearer Verifier
	Key    string
}

// maxDelivery bounds a request body (Event Grid's batches are at most 1 MB).
const maxDelivery = 1 << 20

func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodOptions:
		h.handshakeCloudEvents(w, r)
	case http.MethodPost:
		h.post(w, r)
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		http.Error(w, "POST events, or OPTIONS for the CloudEvents handshake", http.StatusMethodNotAllowed)
	}
}

// handshakeCloudEvents answers CloudEvents' webhook validation: the
// origin may deliver, at any rate.
func (h *Webhook) handshakeCloudEvents(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("WebHook-Request-Origin")
	if origin == "" {
		http.Error(w, "WebHook-Request-Origin is required", http.StatusBadRequest)
		return
	}
	w.Header().Set("WebHook-Allowed-Origin", origin)
	w.Header().Set("WebHook-Allowed-Rate", "*")
	w.WriteHeader(http.StatusOK)
}

func (h *Webhook) post(w http.ResponseWriter, r *http.Request) {
	if err := h.authenticate(r); err != nil {
		h.Feed.cfg.Metrics.event(SourceWebhook, Unauthenticated)
		h.Feed.cfg.Logger.Warn("webhook delivery refused", "remote", r.RemoteAddr, "err", err)
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, "unauthenticated", http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxDelivery+1))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	events, err := parse(r, body)
	if err != nil {
		h.Feed.cfg.Metrics.event(SourceWebhook, Malformed)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if strings.EqualFold(r.Header.Get("aeg-event-type"), "SubscriptionValidation") {
		h.validate(w, events)
		return
	}
	var failed error
	for _, e := range events {
		if _, err := h.Feed.Handle(r.Context(), SourceWebhook, e); err != nil {
			failed = errors.Join(failed, err)
		}
	}
	if failed != nil {
		h.Feed.cfg.Logger.Warn("webhook delivery not recorded; Event Grid will retry", "err", failed)
		http.Error(w, "the change could not be recorded; retry", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// validate answers the Event Grid schema's validation handshake with the
// code (the subscription then goes live at once).
func (h *Webhook) validate(w http.ResponseWriter, events []kvevents.Event) {
	if len(events) != 1 {
		http.Error(w, "a validation delivery holds one event", http.StatusBadRequest)
		return
	}
	v, err := kvevents.ValidationOf(events[0])
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.Feed.cfg.Logger.Info("Event Grid subscription validated", "topic", events[0].Topic)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"validationResponse": v.Code})
}

// parse reads a delivery by its content type: CloudEvents' structured
// mode (one event or a batch), else the Event Grid schema.
func parse(r *http.Request, body []byte) ([]kvevents.Event, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if strings.HasPrefix(mt, "application/cloudevents") {
		return kvevents.ParseCloudEvents(body)
	}
	return kvevents.ParseEventGrid(body)
}

// authenticate checks the caller: a bearer token when Entra is configured,
// the shared key when one is.
func (h *Webhook) authenticate(r *http.Request) error {
	if h.Bearer != nil {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			return errors.New("no bearer token")
		}
		if err := h.Bearer.Verify(r.Context(), tok); err != nil {
			return err
		}
	}
	if h.Key != "" {
		if subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("key")), []byte(h.Key)) != 1 {
			return errors.New("wrong or missing key")
		}
	}
	if h.Bearer == nil && h.Key == "" {
		return errors.New("the webhook has no authentication configured")
	}
	return nil
}
