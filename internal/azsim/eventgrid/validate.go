package eventgrid

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"kvmount.dev/kvmount/internal/azsim/store"
)

// validationOrigin is the origin CloudEvents' handshake names.
const validationOrigin = "eventgrid.azure.net"

// handshake validates a new webhook subscription as Event Grid does before
// it delivers anything. Event Grid schema: a POST of the validation event;
// the answer must be 200 and echo the code (the subscription is then live),
// or the endpoint GETs the validation URL within five minutes (until then
// it awaits manual action). CloudEvents: an OPTIONS request naming the
// origin, which the answer must allow. Anything else fails the creation.
func (b *Broker) handshake(sub *Subscription, topicID string) error {
	if sub.Schema == SchemaCloudEvents {
		return b.handshakeCloudEvents(sub)
	}
	code := newID()
	key := subscriptionKey(sub.ResourceGroup, sub.SystemTopic, sub.Name)
	vurl := b.cfg.ValidationBase + ValidatePath + "?id=" + url.QueryEscape(key) + "&t=" + url.QueryEscape(code)
	ev := map[string]any{"id": newID(), "topic": topicID, "subject": "", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
		"eventTime": b.cfg.Now().UTC().Format("2006-01-02T15:04:05.0000000Z"), "data": map[string]string{"validationCode": code, "validationUrl": vurl},
		"dataVersion": "2", "metadataVersion": "1"}
	body, _ := json.Marshal([]any{ev})
	ctx, cancel := ctxTimeout()
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.Endpoint, bytes.NewReader(body))
	if err != nil {
		return handshakeError(sub.Endpoint, err.Error())
	}
	req.Header.Set("Content-Type", "application/json")
	w := &webhook{b: b, sub: *sub}
	w.headers(req, *sub, "SubscriptionValidation", 0)
	req.Header.Set("aeg-data-version", "2")
	if err := w.authorize(req, *sub); err != nil {
		return handshakeError(sub.Endpoint, err.Error())
	}
	resp, err := b.cfg.Client.Do(req)
	if err != nil {
		return handshakeError(sub.Endpoint, "Http POST request failed: "+err.Error())
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return handshakeError(sub.Endpoint, fmt.Sprintf("Http POST request failed with response code %d", resp.StatusCode))
	}
	var answer struct {
		ValidationResponse string `json:"validationResponse"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, &answer) == nil && answer.ValidationResponse == code {
		sub.State = StateSucceeded
		return nil
	}
	sub.State, sub.ValidationCode = StateAwaitingAck, code
	sub.ValidationDeadline = b.cfg.Now().Add(b.scaled(validationTimeout))
	return nil
}

func (b *Broker) handshakeCloudEvents(sub *Subscription) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodOptions, sub.Endpoint, nil)
	if err != nil {
		return handshakeError(sub.Endpoint, err.Error())
	}
	req.Header.Set("WebHook-Request-Origin", validationOrigin)
	req.Header.Set("WebHook-Request-Rate", "120")
	w := &webhook{b: b, sub: *sub}
	if err := w.authorize(req, *sub); err != nil {
		return handshakeError(sub.Endpoint, err.Error())
	}
	resp, err := b.cfg.Client.Do(req)
	if err != nil {
		return handshakeError(sub.Endpoint, "Http OPTIONS request failed: "+err.Error())
	}
	resp.Body.Close()
	allowed := resp.Header.Get("WebHook-Allowed-Origin")
	if resp.StatusCode != http.StatusOK || (allowed != "*" && !strings.EqualFold(allowed, validationOrigin)) {
		return handshakeError(sub.Endpoint, fmt.Sprintf("Http OPTIONS request returned %d with WebHook-Allowed-Origin %q", resp.StatusCode, allowed))
	}
	sub.State = StateSucceeded
	return nil
}

func handshakeError(endpoint, why string) error {
	return &Error{Status: http.StatusBadRequest, Code: "Url validation", Message: fmt.Sprintf(
		"Webhook validation handshake failed for %s. %s. For troubleshooting, visit https://aka.ms/esvalidation.", endpoint, why)}
}

// serveValidate completes a manual validation: a GET of the URL the
// validation event carried, within five minutes.
func (b *Broker) serveValidate(w http.ResponseWriter, r *http.Request) {
	key, code := r.URL.Query().Get("id"), r.URL.Query().Get("t")
	var ok bool
	err := b.cfg.DB.Update(func(tx *store.Tx) error {
		s, err := store.Get[Subscription](tx, bucketSubscriptions, key)
		if err != nil || s.State != StateAwaitingAck || s.ValidationCode != code || b.cfg.Now().After(s.ValidationDeadline) {
			return nil
		}
		s.State, s.ValidationCode = StateSucceeded, ""
		ok = true
		return store.Put(tx, bucketSubscriptions, key, s)
	})
	if err != nil || !ok {
		http.Error(w, "the validation URL is unknown, used, or expired", http.StatusBadRequest)
		return
	}
	_, _ = io.WriteString(w, "Webhook successfully validated as a part of the subscription validation.")
}

// Error is a management operation's failure.
type Error struct {
	Status        int
	Code, Message string
}

func (e *Error) Error() string { return fmt.Sprintf("(%s) %s", e.Code, e.Message) }
