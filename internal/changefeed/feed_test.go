package changefeed

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	spcv1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	"kvmount.dev/kvmount/internal/azure/kvevents"
	"kvmount.dev/kvmount/internal/refresh"
)

func class(ns, name, provider, vault string, objects ...string) *unstructured.Unstructured {
	arr := "array:\n"
	for _, o := range objects {
		typ, n, _ := strings.Cut(o, "/")
		arr += "  - |\n    objectName: " + n + "\n    objectType: " + typ + "\n"
	}
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
		"metadata": map[string]any{"name": name, "namespace": ns, "resourceVersion": "1"},
		"spec":     map[string]any{"provider": provider, "parameters": map[string]any{"keyvaultName": vault, "objects": arr}}}}
}

// testFeed is a feed over a fake API server holding classes.
func testFeed(t *testing.T, objs ...k8sruntime.Object) (*Feed, *dynamicfake.FakeDynamicClient, *Metrics) {
	t.Helper()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(k8sruntime.NewScheme(),
		map[schema.GroupVersionResource]string{spcv1.SecretProviderClassResource: "SecretProviderClassList"}, objs...)
	inf := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0).ForResource(spcv1.SecretProviderClassResource).Informer()
	m := NewMetrics(prometheus.NewRegistry())
	f, err := New(Config{Dynamic: dyn, Classes: inf, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go inf.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("no sync")
	}
	return f, dyn, m
}

func newVersion(id, vault, kind, name string) kvevents.Event {
	typ := map[string]string{"secret": kvevents.TypeSecretNewVersion, "key": kvevents.TypeKeyNewVersion, "certificate": kvevents.TypeCertificateNewVersion}[kind]
	return kvevents.Event{ID: id, Type: typ, Topic: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/" + vault, Subject: name,
		Time: time.Now(), Data: []byte(`{"VaultName":"` + vault + `","ObjectType":"` + kind + `","ObjectName":"` + name + `","Version":"v9"}`)}
}

func changesOn(t *testing.T, dyn *dynamicfake.FakeDynamicClient, ns, name string) []refresh.Change {
	t.Helper()
	u, err := dyn.Resource(spcv1.SecretProviderClassResource).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := refresh.ParseChanges(u.GetAnnotations()[refresh.ChangedAnnotation])
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// awaitChanges waits until the feed's informer holds class ns/name with
// n recorded changes.
func awaitChanges(t *testing.T, f *Feed, ns, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		obj, ok, _ := f.cfg.Classes.GetStore().GetByKey(ns + "/" + name)
		if ok {
			cs, _ := refresh.ParseChanges(obj.(*unstructured.Unstructured).GetAnnotations()[refresh.ChangedAnnotation])
			if len(cs) == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the informer never saw %d changes on %s/%s", n, ns, name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHandle: an event is recorded on exactly the classes that read its
// object — one write each — and every other kind of event is counted and
// changes nothing.
func TestHandle(t *testing.T) {
	f, dyn, m := testFeed(t,
		class("a", "db", "azure", "KV1", "secret/db", "secret/api"),
		class("b", "db-too", "azure", "kv1", "secret/DB"),
		class("c", "tls", "azure", "kv1", "secret/web"),
		class("d", "vault-provider", "vault", "kv1", "secret/db"))
	ctx := context.Background()
	ev := newVersion("e1", "kv1", "secret", "db")
	ev.Data = []byte(`{"VaultName":"kv1","ObjectType":"Secret","ObjectName":"db","Version":"v9"}`)
	for _, tc := range []struct {
		name string
		ev   kvevents.Event
		want string
	}{
		{"new version", ev, Accepted},
		{"same again", ev, Duplicate},
		{"near expiry", kvevents.Event{ID: "e2", Type: "Microsoft.KeyVault.SecretNearExpiry", Data: []byte(`{}`)}, Ignored},
		{"object no class reads", newVersion("e3", "kv1", "secret", "nobody"), Unmatched},
		{"a key of a secret's name", newVersion("e4", "kv1", "key", "db"), Unmatched},
		{"vault no class reads", newVersion("e5", "kv9", "secret", "db"), UnknownVault},
		{"malformed", kvevents.Event{ID: "e6", Type: kvevents.TypeSecretNewVersion, Data: []byte(`{"VaultName":"kv1"}`)}, Malformed},
	} {
		got, err := f.Handle(ctx, SourceWebhook, tc.ev)
		if err != nil || got != tc.want {
			t.Errorf("%s: %s, %v; want %s", tc.name, got, err, tc.want)
		}
	}
	for _, c := range []struct{ ns, name string }{{"a", "db"}, {"b", "db-too"}} {
		if cs := changesOn(t, dyn, c.ns, c.name); len(cs) != 1 || cs[0].ID != "e1" || cs[0].Version != "v9" {
			t.Errorf("class %s/%s changes %v, want e1", c.ns, c.name, cs)
		}
	}
	for _, c := range []struct{ ns, name string }{{"c", "tls"}, {"d", "vault-provider"}} {
		if cs := changesOn(t, dyn, c.ns, c.name); len(cs) != 0 {
			t.Errorf("class %s/%s got %v", c.ns, c.name, cs)
		}
	}
	var patches int
	for _, a := range dyn.Actions() {
		if a.GetVerb() == "patch" {
			patches++
		}
	}
	if patches != 2 {
		t.Errorf("%d writes for one event read by two classes, want 2", patches)
	}
	if got := testutil.ToFloat64(m.events.WithLabelValues(SourceWebhook, UnknownVault)); got != 1 {
		t.Errorf("unknown_vault counted %v", got)
	}
}

// TestRecordRetriesConflicts: a write that races another replica's is
// retried on the class as it now is, keeping both changes.
func TestRecordRetriesConflicts(t *testing.T) {
	f, dyn, _ := testFeed(t, class("a", "db", "azure", "kv1", "secret/db"))
	conflicts := 1
	dyn.PrependReactor("patch", "secretproviderclasses", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		if conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(spcv1.SecretProviderClassResource.GroupResource(), "db", errors.New("changed"))
		}
		return false, nil, nil
	})
	if got, err := f.Handle(context.Background(), SourcePull, newVersion("e1", "kv1", "secret", "db")); err != nil || got != Accepted {
		t.Fatalf("%s %v", got, err)
	}
	if cs := changesOn(t, dyn, "a", "db"); len(cs) != 1 {
		t.Fatalf("changes %v", cs)
	}
	dyn.PrependReactor("patch", "secretproviderclasses", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("down")
	})
	got, err := f.Handle(context.Background(), SourcePull, newVersion("e2", "kv1", "secret", "db"))
	if got != Failed || err == nil {
		t.Fatalf("a failed write: %s %v; want Failed with the error, for the source to retry", got, err)
	}
	// Not remembered as seen: the retry is handled.
	if _, dup := f.seen.Get("e2"); dup {
		t.Fatal("a failed event was remembered as handled")
	}
}

// TestWebhookAnswers: the handshakes, and answers by Event Grid's rules.
func TestWebhookAnswers(t *testing.T) {
	f, dyn, m := testFeed(t, class("a", "db", "azure", "kv1", "secret/db"))
	srv := httptest.NewServer(&Webhook{Feed: f, Key: "0123456789abcdef0123"})
	defer srv.Close()
	post := func(query, contentType, eventType, body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/events"+query, strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("aeg-event-type", eventType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	const key = "?key=0123456789abcdef0123"
	event := `[{"id":"e1","topic":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1","subject":"db","eventType":"Microsoft.KeyVault.SecretNewVersionCreated","eventTime":"2026-12-07T10:00:00Z","data":{"VaultName":"kv1","ObjectType":"Secret","ObjectName":"db","Version":"v2"},"dataVersion":"1","metadataVersion":"1"}]`
	for _, tc := range []struct {
		name, query, ct, typ, body string
		want                       int
	}{
		{"no key", "", "application/json", "Notification", event, 401},
		{"wrong key", "?key=guess", "application/json", "Notification", event, 401},
		{"malformed", key, "application/json", "Notification", `{"not":"an array"}`, 400},
		{"delivery", key, "application/json", "Notification", event, 200},
		{"CloudEvent", key, "application/cloudevents+json; charset=utf-8", "Notification", `{"specversion":"1.0","id":"e2","source":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1","type":"Microsoft.KeyVault.SecretNewVersionCreated","data":{"VaultName":"kv1","ObjectName":"db","Version":"v3"}}`, 200},
	} {
		if resp := post(tc.query, tc.ct, tc.typ, tc.body); resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		// The fake API server does not refuse a write naming an old
		// resource version, as the real one does (record retries on that
		// conflict), so let the informer see each change before the next.
		awaitChanges(t, f, "a", "db", len(changesOn(t, dyn, "a", "db")))
	}
	if cs := changesOn(t, dyn, "a", "db"); len(cs) != 2 {
		t.Fatalf("changes %v; want both deliveries'", cs)
	}
	if got := testutil.ToFloat64(m.events.WithLabelValues(SourceWebhook, Unauthenticated)); got != 2 {
		t.Errorf("unauthenticated counted %v, want 2", got)
	}

	// The Event Grid schema's handshake echoes the code; unauthenticated
	// it gets nothing.
	val := `[{"id":"v","topic":"t","subject":"","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","eventTime":"2026-12-07T10:00:00Z","data":{"validationCode":"c0de","validationUrl":"https://x:553/v"},"dataVersion":"2","metadataVersion":"1"}]`
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/events"+key, strings.NewReader(val))
	req.Header.Set("aeg-event-type", "SubscriptionValidation")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	buf := make([]byte, 256)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(b.String(), `"validationResponse":"c0de"`) {
		t.Fatalf("validation: %d %s", resp.StatusCode, b.String())
	}
	if resp := post("", "application/json", "SubscriptionValidation", val); resp.StatusCode != 401 {
		t.Fatalf("an unauthenticated validation: %d", resp.StatusCode)
	}
	// CloudEvents' handshake.
	req, _ = http.NewRequest(http.MethodOptions, srv.URL+"/events", nil)
	req.Header.Set("WebHook-Request-Origin", "eventgrid.azure.net")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("WebHook-Allowed-Origin") != "eventgrid.azure.net" {
		t.Fatalf("OPTIONS: %d %v", resp.StatusCode, resp.Header)
	}
	// A write failure asks Event Grid to retry.
	dyn.PrependReactor("patch", "secretproviderclasses", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("down")
	})
	if resp := post(key, "application/json", "Notification", strings.ReplaceAll(event, `"e1"`, `"e9"`)); resp.StatusCode != 503 {
		t.Fatalf("a failed write answered %d, want 503", resp.StatusCode)
	}
	// No authentication configured: refused.
	open := httptest.NewServer(&Webhook{Feed: f})
	defer open.Close()
	r2, _ := http.Post(open.URL, "application/json", strings.NewReader(event))
	if r2.StatusCode != 401 {
		t.Fatalf("a webhook without authentication accepted a delivery: %d", r2.StatusCode)
	}
}
