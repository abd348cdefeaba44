package azsim_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/messaging"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/eventgrid/aznamespaces"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/eventgrid/azsystemevents"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azsim/eventgrid"
)

// hook is a webhook endpoint over TLS that azsim trusts; answer decides
// each response, and every request is kept.
type hook struct {
	srv    *httptest.Server
	caFile string
	mu     sync.Mutex
	reqs   []hookRequest
	answer func(r hookRequest) (int, http.Header, string)
}

type hookRequest struct {
	method string
	header http.Header
	body   []byte
}

func newHook(t *testing.T) *hook {
	h := &hook{}
	h.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := hookRequest{method: r.Method, header: r.Header.Clone(), body: body}
		h.mu.Lock()
		h.reqs = append(h.reqs, req)
		answer := h.answer
		h.mu.Unlock()
		status, hdr, out := answer(req)
		for k, v := range hdr {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		io.WriteString(w, out)
	}))
	t.Cleanup(h.srv.Close)
	h.caFile = filepath.Join(t.TempDir(), "hook-ca.pem")
	if err := os.WriteFile(h.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	h.answer = validating(http.StatusOK)
	return h
}

// validating answers the Event Grid schema's handshake with the code and
// every delivery with status.
func validating(status int) func(hookRequest) (int, http.Header, string) {
	return func(r hookRequest) (int, http.Header, string) {
		if r.header.Get("aeg-event-type") != "SubscriptionValidation" {
			return status, nil, ""
		}
		var evs []azsystemevents.EventGridEvent
		if err := json.Unmarshal(r.body, &evs); err != nil || len(evs) != 1 {
			return http.StatusBadRequest, nil, ""
		}
		var d azsystemevents.SubscriptionValidationEventData
		if err := json.Unmarshal(evs[0].Data.([]byte), &d); err != nil || d.ValidationCode == nil {
			return http.StatusBadRequest, nil, ""
		}
		return http.StatusOK, nil, `{"validationResponse":"` + *d.ValidationCode + `"}`
	}
}

func (h *hook) set(answer func(hookRequest) (int, http.Header, string)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.answer = answer
}

// notifications are the deliveries (not handshakes) received.
func (h *hook) notifications() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []hookRequest
	for _, r := range h.reqs {
		if r.method == http.MethodPost && r.header.Get("aeg-event-type") == "Notification" {
			out = append(out, r)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// vaultTopic makes vault kv1 and its system topic, returning the vault's
// resource ID.
func vaultTopic(t *testing.T, s *azsim.Server) string {
	t.Helper()
	v := admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	id := v["id"].(string)
	admin(t, s, "eventgrid system-topic create", eventgrid.SystemTopicArgs{ResourceGroup: "rg", Name: "kv1-events", TopicType: "Microsoft.KeyVault.vaults", Source: id})
	return id
}

// TestWebhookEventGridSchema: the handshake, then one delivery per event
// that passes the filter, in the schema and with the headers the
// documentation gives, read with Microsoft's models; an Entra-protected
// webhook gets Event Grid's token for its app.
func TestWebhookEventGridSchema(t *testing.T) {
	h := newHook(t)
	s := startServer(t, azsim.Config{TrustCAFiles: []string{h.caFile}})
	vaultID := vaultTopic(t, s)
	sub := admin(t, s, "eventgrid system-topic event-subscription create", eventgrid.SubscriptionArgs{ResourceGroup: "rg", SystemTopicName: "kv1-events",
		Name: "kvmount", Endpoint: h.srv.URL + "/events", IncludedEventTypes: []string{"Microsoft.KeyVault.SecretNewVersionCreated"},
		SubjectBeginsWith: "APP-", AADTenantID: s.TenantID(), AADAppIDOrURI: "api://kvmount-events"})
	if sub["provisioningState"] != "Succeeded" {
		t.Fatalf("subscription %v: want Succeeded after the handshake", sub)
	}
	set := admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "app-db", Value: "x"})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "other", Value: "x"})
	admin(t, s, "keyvault key create", arm.KeyArgs{VaultName: "kv1", Name: "app-key"})
	waitFor(t, "one delivery", func() bool { return len(h.notifications()) >= 1 })
	time.Sleep(50 * time.Millisecond) // a wrong second delivery would have come by now
	got := h.notifications()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1 (the filter passes only app-db's new version)", len(got))
	}
	r := got[0]
	for k, want := range map[string]string{"aeg-event-type": "Notification", "aeg-subscription-name": "KVMOUNT", "aeg-delivery-count": "0", "aeg-metadata-version": "1"} {
		if r.header.Get(k) != want {
			t.Errorf("header %s = %q, want %q", k, r.header.Get(k), want)
		}
	}
	var evs []azsystemevents.EventGridEvent
	if err := json.Unmarshal(r.body, &evs); err != nil || len(evs) != 1 {
		t.Fatalf("body %s: %v", r.body, err)
	}
	e := evs[0]
	if *e.EventType != azsystemevents.TypeKeyVaultSecretNewVersionCreated || *e.Subject != "app-db" || !strings.EqualFold(*e.Topic, vaultID) || *e.DataVersion != "1" || e.EventTime == nil {
		t.Fatalf("event %+v", e)
	}
	var d azsystemevents.KeyVaultSecretNewVersionCreatedEventData
	if err := json.Unmarshal(e.Data.([]byte), &d); err != nil {
		t.Fatalf("Microsoft's model cannot read the data %s: %v", e.Data, err)
	}
	version := set["id"].(string)[strings.LastIndex(set["id"].(string), "/")+1:]
	if *d.VaultName != "kv1" || *d.ObjectName != "app-db" || *d.ObjectType != "Secret" || *d.Version != version || *d.ID != set["id"].(string) {
		t.Fatalf("data %s, want the new version %s of app-db", e.Data, set["id"])
	}
	claims := tokenClaims(t, r.header.Get("Authorization"))
	if claims["aud"] != "api://kvmount-events" || claims["appid"] != eventgrid.EventGridAppID || claims["iss"] != "https://sts.windows.net/"+s.TenantID()+"/" {
		t.Fatalf("delivery token claims %v: want Event Grid's app, for the webhook's app, from the tenant", claims)
	}
}

// tokenClaims reads a bearer token's claims (its signature is the
// receiver's to check).
func tokenClaims(t *testing.T, header string) map[string]any {
	t.Helper()
	tok, ok := strings.CutPrefix(header, "Bearer ")
	parts := strings.Split(tok, ".")
	if !ok || len(parts) != 3 {
		t.Fatalf("Authorization %q is not a bearer JWT", header)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestWebhookRetries: a failing endpoint gets the event again on the
// (scaled) schedule with a growing delivery count until it answers 2xx;
// 400, 401 and 413 are not retried; attempts run out at the maximum.
func TestWebhookRetries(t *testing.T) {
	h := newHook(t)
	s := startServer(t, azsim.Config{TrustCAFiles: []string{h.caFile}, EventRetryScale: 0.001})
	vaultTopic(t, s)
	for _, name := range []string{"retried", "dropped", "limited"} {
		admin(t, s, "eventgrid system-topic event-subscription create", eventgrid.SubscriptionArgs{ResourceGroup: "rg", SystemTopicName: "kv1-events",
			Name: name, Endpoint: h.srv.URL + "/" + name, MaxDeliveryAttempts: 3})
	}
	var mu sync.Mutex
	calls := map[string]int{}
	h.set(func(r hookRequest) (int, http.Header, string) {
		if r.header.Get("aeg-event-type") == "SubscriptionValidation" {
			return validating(200)(r)
		}
		name := strings.ToLower(r.header.Get("aeg-subscription-name"))
		mu.Lock()
		defer mu.Unlock()
		calls[name]++
		switch {
		case name == "retried" && calls[name] < 3:
			return http.StatusServiceUnavailable, nil, ""
		case name == "dropped":
			return http.StatusBadRequest, nil, ""
		case name == "limited":
			return http.StatusInternalServerError, nil, ""
		}
		return http.StatusOK, nil, ""
	})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "s", Value: "x"})
	stats := func(name string) eventgrid.Stats { return s.EventGrid().AllStats()["systemTopics/rg/kv1-events/"+name] }
	waitFor(t, "retries settle", func() bool {
		return stats("retried").Delivered == 1 && stats("dropped").Dropped == 1 && stats("limited").Dropped == 1
	})
	if st := stats("retried"); st.Attempts != 3 || st.Failed != 2 {
		t.Errorf("retried: %+v, want 3 attempts, 2 failed, then delivered", st)
	}
	if st := stats("dropped"); st.Attempts != 1 {
		t.Errorf("a 400 was retried: %+v", st)
	}
	if st := stats("limited"); st.Attempts != 3 {
		t.Errorf("limited: %+v, want exactly the 3 attempts allowed", st)
	}
	var counts []string
	for _, r := range h.notifications() {
		if strings.EqualFold(r.header.Get("aeg-subscription-name"), "retried") {
			counts = append(counts, r.header.Get("aeg-delivery-count"))
		}
	}
	if strings.Join(counts, ",") != "0,1,2" {
		t.Errorf("aeg-delivery-count of the retried deliveries: %v, want 0,1,2", counts)
	}
}

// TestWebhookHandshakes: CloudEvents' OPTIONS handshake and structured
// deliveries; a refused handshake fails the creation; an Event Grid schema
// endpoint that does not echo the code awaits its GET of the validation
// URL, and gets nothing until then.
func TestWebhookHandshakes(t *testing.T) {
	h := newHook(t)
	s := startServer(t, azsim.Config{TrustCAFiles: []string{h.caFile}})
	vaultTopic(t, s)
	h.set(func(r hookRequest) (int, http.Header, string) {
		if r.method == http.MethodOptions {
			return http.StatusOK, http.Header{"Webhook-Allowed-Origin": {r.header.Get("WebHook-Request-Origin")}}, ""
		}
		return http.StatusOK, nil, ""
	})
	admin(t, s, "eventgrid system-topic event-subscription create", eventgrid.SubscriptionArgs{ResourceGroup: "rg", SystemTopicName: "kv1-events",
		Name: "cloudevents", Endpoint: h.srv.URL + "/ce", EventDeliverySchema: "cloudeventschemav1_0"})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "s", Value: "x"})
	waitFor(t, "a CloudEvents delivery", func() bool { return len(h.notifications()) == 1 })
	r := h.notifications()[0]
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/cloudevents+json") {
		t.Fatalf("Content-Type %q", r.header.Get("Content-Type"))
	}
	var ce messaging.CloudEvent
	if err := json.Unmarshal(r.body, &ce); err != nil || ce.Type != azsystemevents.TypeKeyVaultSecretNewVersionCreated || ce.SpecVersion != "1.0" || !strings.HasSuffix(ce.Source, "/vaults/kv1") {
		t.Fatalf("CloudEvent %+v (%v) from %s", ce, err, r.body)
	}

	// A CloudEvents endpoint that does not allow the origin.
	h.set(func(hookRequest) (int, http.Header, string) { return http.StatusOK, nil, "" })
	_, err := s.Admin(context.Background(), "eventgrid system-topic event-subscription create", eventgrid.SubscriptionArgs{ResourceGroup: "rg",
		SystemTopicName: "kv1-events", Name: "refused", Endpoint: h.srv.URL + "/x", EventDeliverySchema: "cloudeventschemav1_0"})
	if err == nil || !strings.Contains(err.Error(), "Webhook validation handshake failed") {
		t.Fatalf("a refused handshake: %v", err)
	}
	// An http endpoint is refused outright.
	if _, err := s.Admin(context.Background(), "eventgrid system-topic event-subscription create", eventgrid.SubscriptionArgs{ResourceGroup: "rg",
		SystemTopicName: "kv1-events", Name: "plain", Endpoint: "http://127.0.0.1:1/"}); err == nil || !strings.Contains(err.Error(), "https") {
		t.Fatalf("an http endpoint: %v", err)
	}

	// Manual validation: 200 without the code.
	var vurl string
	h.set(func(r hookRequest) (int, http.Header, string) {
		if r.header.Get("aeg-event-type") == "SubscriptionValidation" {
			var evs []azsystemevents.EventGridEvent
			_ = json.Unmarshal(r.body, &evs)
			var d azsystemevents.SubscriptionValidationEventData
			_ = json.Unmarshal(evs[0].Data.([]byte), &d)
			vurl = *d.ValidationURL
		}
		return http.StatusOK, nil, ""
	})
	sub := admin(t, s, "eventgrid system-topic event-subscription create", eventgrid.SubscriptionArgs{ResourceGroup: "rg", SystemTopicName: "kv1-events",
		Name: "manual", Endpoint: h.srv.URL + "/manual"})
	if sub["provisioningState"] != "AwaitingManualAction" || vurl == "" {
		t.Fatalf("subscription %v (validation URL %q): want AwaitingManualAction", sub["provisioningState"], vurl)
	}
	before := len(h.notifications())
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "s", Value: "y"})
	waitFor(t, "the CloudEvents subscription's delivery", func() bool { return len(h.notifications()) == before+1 })
	resp, err := s.HTTPClient().Get(vurl)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v %v", vurl, resp, err)
	}
	resp.Body.Close()
	sub = admin(t, s, "eventgrid system-topic event-subscription show", eventgrid.SubscriptionArgs{ResourceGroup: "rg", SystemTopicName: "kv1-events", Name: "manual"})
	if sub["provisioningState"] != "Succeeded" {
		t.Fatalf("after the GET: %v", sub["provisioningState"])
	}
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "s", Value: "z"})
	waitFor(t, "both subscriptions' deliveries", func() bool { return len(h.notifications()) == before+3 })
}

// pullWorld is a vault whose events go to an Event Grid namespace topic,
// and a service principal with the receiver role on it.
func pullWorld(t *testing.T, scale float64, maxDeliveries int) (*azsim.Server, *aznamespaces.ReceiverClient, azcore.TokenCredential, string) {
	t.Helper()
	s := startServer(t, azsim.Config{EventRetryScale: scale})
	vaultTopic(t, s)
	ns := admin(t, s, "eventgrid namespace create", eventgrid.NamespaceArgs{ResourceGroup: "rg", Name: "kvm-events"})
	topic := admin(t, s, "eventgrid namespace topic create", eventgrid.NamespaceArgs{ResourceGroup: "rg", NamespaceName: "kvm-events", Name: "keyvault"})
	admin(t, s, "eventgrid namespace topic event-subscription create", eventgrid.NamespaceArgs{ResourceGroup: "rg", NamespaceName: "kvm-events",
		TopicName: "keyvault", Name: "kvmount", MaxDeliveryCount: maxDeliveries})
	admin(t, s, "eventgrid system-topic event-subscription create", eventgrid.SubscriptionArgs{ResourceGroup: "rg", SystemTopicName: "kv1-events",
		Name: "to-namespace", Endpoint: topic["id"].(string), EndpointType: "namespacetopic", EventDeliverySchema: "cloudeventschemav1_0"})
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	admin(t, s, "role assignment create", arm.RoleArgs{Assignee: sp["appId"].(string), Role: "EventGrid Data Receiver", Scope: ns["id"].(string)})
	cred := spCredential(t, s, sp)
	endpoint := "https://" + ns["topicsConfiguration"].(map[string]any)["hostname"].(string)
	rc, err := aznamespaces.NewReceiverClient(endpoint, "keyvault", "kvmount", cred, &aznamespaces.ReceiverClientOptions{ClientOptions: clientOptions(s)})
	if err != nil {
		t.Fatal(err)
	}
	return s, rc, cred, ns["id"].(string)
}

func receive(t *testing.T, rc *aznamespaces.ReceiverClient, max int32) []aznamespaces.ReceiveDetails {
	t.Helper()
	wait := int32(10)
	resp, err := rc.ReceiveEvents(context.Background(), &aznamespaces.ReceiveEventsOptions{MaxEvents: &max, MaxWaitTime: &wait})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Details
}

// TestNamespacePull: events reach a namespace topic's queue and are read
// with Microsoft's receiver: locks, acknowledge, release, reject, renew,
// redelivery when a lock expires, dead-lettering at the maximum delivery
// count; Entra RBAC on the data plane.
func TestNamespacePull(t *testing.T) {
	s, rc, cred, nsID := pullWorld(t, 0.01, 2) // 60 s locks last 600 ms
	ctx := context.Background()
	set := admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "a", Value: "1"})
	got := receive(t, rc, 10)
	if len(got) != 1 || *got[0].BrokerProperties.DeliveryCount != 1 {
		t.Fatalf("received %d events, want 1 with delivery count 1", len(got))
	}
	e := got[0].Event
	var d azsystemevents.KeyVaultSecretNewVersionCreatedEventData
	if err := json.Unmarshal(e.Data.([]byte), &d); err != nil || *d.ObjectName != "a" || *d.ID != set["id"] || e.Type != azsystemevents.TypeKeyVaultSecretNewVersionCreated {
		t.Fatalf("event %+v data %s: %v", e, e.Data, err)
	}
	ack, err := rc.AcknowledgeEvents(ctx, []string{*got[0].BrokerProperties.LockToken}, nil)
	if err != nil || len(ack.SucceededLockTokens) != 1 {
		t.Fatalf("acknowledge: %+v %v", ack, err)
	}
	if again, _ := rc.AcknowledgeEvents(ctx, []string{*got[0].BrokerProperties.LockToken}, nil); len(again.FailedLockTokens) != 1 {
		t.Fatal("an event acknowledged twice")
	}

	// Release: handed out again, counted.
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "b", Value: "1"})
	got = receive(t, rc, 10)
	if _, err := rc.ReleaseEvents(ctx, []string{*got[0].BrokerProperties.LockToken}, nil); err != nil {
		t.Fatal(err)
	}
	got = receive(t, rc, 10)
	if len(got) != 1 || *got[0].BrokerProperties.DeliveryCount != 2 {
		t.Fatalf("after release: %d events, delivery count %v; want it again with count 2", len(got), got)
	}
	// Renewing keeps the lock past its first expiry.
	tok := *got[0].BrokerProperties.LockToken
	time.Sleep(400 * time.Millisecond)
	if r, err := rc.RenewEventLocks(ctx, []string{tok}, nil); err != nil || len(r.SucceededLockTokens) != 1 {
		t.Fatalf("renew: %+v %v", r, err)
	}
	time.Sleep(400 * time.Millisecond)
	if r, err := rc.RejectEvents(ctx, []string{tok}, nil); err != nil || len(r.SucceededLockTokens) != 1 {
		t.Fatalf("reject after a renewal: %+v %v", r, err)
	}

	// Lock expiry: redelivered, then dead-lettered at the maximum (2).
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "c", Value: "1"})
	first := receive(t, rc, 10)
	second := receive(t, rc, 10) // waits for the lock to expire
	if len(first) != 1 || len(second) != 1 || *second[0].BrokerProperties.DeliveryCount != 2 || second[0].Event.ID != first[0].Event.ID {
		t.Fatalf("lock expiry: first %d, second %d events", len(first), len(second))
	}
	waitFor(t, "dead-lettered after two deliveries", func() bool {
		return s.EventGrid().AllStats()["namespaces/kvm-events/keyvault/kvmount"].DeadLettered == 2 // the rejected one and this
	})

	// The receiver role does not publish; the sender role does.
	sender, err := aznamespaces.NewSenderClient(strings.TrimSuffix(rcEndpoint(nsID), "/"), "keyvault", cred, &aznamespaces.SenderClientOptions{ClientOptions: clientOptions(s)})
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := messaging.NewCloudEvent("/forged", "Microsoft.KeyVault.SecretNewVersionCreated", map[string]string{"VaultName": "kv1", "ObjectName": "x"}, nil)
	_, err = sender.SendEvent(ctx, &ev, nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
		t.Fatalf("a receiver published: %v", err)
	}
	// No role at all: forbidden to receive too.
	other := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	rcOther, _ := aznamespaces.NewReceiverClient(rcEndpoint(nsID), "keyvault", "kvmount", spCredential(t, s, other), &aznamespaces.ReceiverClientOptions{ClientOptions: clientOptions(s)})
	wait := int32(10)
	_, err = rcOther.ReceiveEvents(ctx, &aznamespaces.ReceiveEventsOptions{MaxWaitTime: &wait})
	if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
		t.Fatalf("a principal without a role received: %v", err)
	}
}

// rcEndpoint is a namespace's data-plane URL from its resource ID.
func rcEndpoint(nsID string) string {
	return "https://" + nsID[strings.LastIndex(nsID, "/")+1:] + "." + azsim.EventGridSuffix
}

// TestExpiryAndPolicyEvents: near expiry 30 days ahead and expiry, once
// each per version; an access policy change.
func TestExpiryAndPolicyEvents(t *testing.T) {
	s, rc, _, _ := pullWorld(t, 1, 10)
	exp := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Second)
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "expiring", Value: "1", Expires: exp.Format(time.RFC3339)})
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	admin(t, s, "keyvault set-policy", arm.PolicyArgs{Name: "kv1", SPN: sp["appId"].(string), Secrets: &[]string{"get"}})
	s.ScanExpiry(time.Now())
	s.ScanExpiry(time.Now())
	s.ScanExpiry(exp.Add(time.Second))
	var types []string
	for len(types) < 4 {
		got := receive(t, rc, 10)
		if len(got) == 0 {
			break
		}
		for _, d := range got {
			types = append(types, strings.TrimPrefix(d.Event.Type, "Microsoft.KeyVault."))
			if _, err := rc.AcknowledgeEvents(context.Background(), []string{*d.BrokerProperties.LockToken}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if strings.Join(types, ",") != "SecretNewVersionCreated,VaultAccessPolicyChanged,SecretNearExpiry,SecretExpired" {
		t.Fatalf("events %v", types)
	}
}
