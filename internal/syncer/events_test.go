package syncer_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/messaging"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/eventgrid/aznamespaces"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	spcv1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azsim/eventgrid"
	"kvmount.dev/kvmount/internal/azure/entraauth"
	"kvmount.dev/kvmount/internal/changefeed"
	"kvmount.dev/kvmount/internal/pki"
	"kvmount.dev/kvmount/internal/refresh"
	"kvmount.dev/kvmount/internal/serve"
)

// TestEventsRefresh: Key Vault's event for a new version reaches the
// controller both ways at once — an Entra-protected webhook and a
// namespace topic it pulls from — and the SecretSync's Secret changes
// without a poll (the poll is an hour), with one Key Vault read of the
// changed object and none of the other; the second delivery of the same
// event is a duplicate. Forged deliveries (no token, another audience,
// another app's token for the right audience) are refused and counted; an
// event about a vault no class reads is refused and writes nothing.
// Refresh on demand re-reads everything.
func TestEventsRefresh(t *testing.T) {
	w := theWorld(t)
	ns := w.namespace("events")
	db, other := ns+"-db", ns+"-other"
	w.admin("keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: db, Value: "v1"})
	w.admin("keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: other, Value: "o1"})
	w.class(ns, "spc", "objectName: "+db+"\nobjectType: secret", "objectName: "+other+"\nobjectType: secret")
	w.secretSync(ns, "synced", "spc", "", db, "db", other, "other")

	var feed *changefeed.Feed
	c := w.start("events-0", nil, func(c *controller) {
		var err error
		if feed, err = changefeed.New(changefeed.Config{Dynamic: c.dyn, Classes: c.ClassInformer(), Metrics: changefeed.NewMetrics(c.reg)}); err != nil {
			t.Fatal(err)
		}
	})
	w.waitSecret(ns, "synced", "db", "v1")

	audience := "api://kvmount-" + ns
	hook := w.webhook(t, &changefeed.Webhook{Feed: feed, Bearer: &entraauth.Verifier{Authority: azsim.LoginURL, TenantID: w.tenant,
		Audiences: []string{audience}, HTTPClient: w.sim.HTTPClient()}})
	receiver, sender := w.eventRouting(t, ns, hook, audience)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&changefeed.Puller{Feed: feed, Receiver: receiver, MaxWait: 10 * time.Second}).Run(ctx)

	gets := func(name string) uint64 { return w.sim.KeyVault().ObjectGets("kv1", name) }
	dbBefore, otherBefore := gets(db), gets(other)
	w.admin("keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: db, Value: "v2"})
	w.waitSecret(ns, "synced", "db", "v2")
	waitFor(t, 15*time.Second, "both deliveries", func() (bool, string) {
		a, d := c.metric("kvmount_events_total", "result=accepted,source=webhook")+c.metric("kvmount_events_total", "result=accepted,source=pull"),
			c.metric("kvmount_events_total", "result=duplicate,source=webhook")+c.metric("kvmount_events_total", "result=duplicate,source=pull")
		return a == 1 && d == 1, fmt.Sprintf("accepted %v, duplicate %v", a, d)
	})
	if d := gets(db) - dbBefore; d != 1 {
		t.Errorf("the changed object was read %d times for one event delivered twice; want 1", d)
	}
	if d := gets(other) - otherBefore; d != 0 {
		t.Errorf("an unchanged object was read %d times; want 0", d)
	}
	waitFor(t, 10*time.Second, "the SecretSync told of the update", func() (bool, string) {
		e := w.events(ns, "synced")
		return strings.Contains(e, "SecretUpdated"), e
	})

	// Forged deliveries.
	sp := w.admin("ad sp create-for-rbac", arm.SPArgs{})
	body := `[{"id":"forged","topic":"/subscriptions/x/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1","subject":"` + db + `","eventType":"Microsoft.KeyVault.SecretNewVersionCreated","eventTime":"2026-12-07T10:00:00Z","data":{"VaultName":"kv1","ObjectType":"Secret","ObjectName":"` + db + `","Version":"x"},"dataVersion":"1","metadataVersion":"1"}]`
	for _, tok := range []string{"", w.token(t, sp, azsim.VaultResource), w.token(t, sp, audience)} {
		req, _ := http.NewRequest(http.MethodPost, hook+"/events", strings.NewReader(body))
		req.Header.Set("aeg-event-type", "Notification")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := w.webhookClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a forged delivery answered %d, want 401", resp.StatusCode)
		}
	}
	if got := c.metric("kvmount_events_total", "result=unauthenticated,source=webhook"); got != 3 {
		t.Errorf("unauthenticated deliveries counted %v, want 3", got)
	}
	// An event about a vault no class reads, from a sender with rights.
	ev, _ := messaging.NewCloudEvent("/subscriptions/x/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/elsewhere", "Microsoft.KeyVault.SecretNewVersionCreated",
		map[string]string{"VaultName": "elsewhere", "ObjectType": "Secret", "ObjectName": db}, nil)
	if _, err := sender.SendEvent(context.Background(), &ev, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the unknown vault refused", func() (bool, string) {
		n := c.metric("kvmount_events_total", "result=unknown_vault,source=pull")
		return n == 1, fmt.Sprint(n)
	})
	u, _ := w.dyn.Resource(spcv1.SecretProviderClassResource).Namespace(ns).Get(context.Background(), "spc", metav1.GetOptions{})
	if cs, _ := refresh.ParseChanges(u.GetAnnotations()[refresh.ChangedAnnotation]); len(cs) != 1 {
		t.Errorf("class changes %v: want the one real change only", cs)
	}

	// Refresh on demand: every object afresh.
	dbBefore, otherBefore = gets(db), gets(other)
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, refresh.RequestAnnotation, time.Now().Format(time.RFC3339Nano))
	if _, err := w.dyn.Resource(ssv1.Resource).Namespace(ns).Patch(context.Background(), "synced", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "a refresh of both objects", func() (bool, string) {
		return gets(db) > dbBefore && gets(other) > otherBefore, fmt.Sprintf("db +%d, other +%d", gets(db)-dbBefore, gets(other)-otherBefore)
	})
}

// webhook serves h over TLS with a certificate azsim trusts; it returns
// the base URL.
func (w *world) webhook(t *testing.T, h http.Handler) string {
	t.Helper()
	dir := t.TempDir()
	cert, key, err := w.webhookCA.Issue(dir, "webhook", pki.Spec{CommonName: "webhook", Server: true, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := serve.CertFiles(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: tlsCfg}
	go srv.Serve(tls.NewListener(ln, tlsCfg))
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

// webhookClient trusts the webhook's CA.
func (w *world) webhookClient() *http.Client {
	t, _ := azsim.NewTransport(w.sim.Addr(), filepath.Join(w.webhookCA.CertPath))
	return &http.Client{Transport: t}
}

// eventRouting sends kv1's events to the webhook (Entra-protected, for
// audience) and to a namespace topic, and returns a receiver of the
// topic's subscription and a sender to the topic, each with its role.
func (w *world) eventRouting(t *testing.T, ns, hook, audience string) (*aznamespaces.ReceiverClient, *aznamespaces.SenderClient) {
	t.Helper()
	v := w.admin("keyvault show", arm.VaultArgs{Name: "kv1"})
	if _, err := w.sim.Admin(context.Background(), "eventgrid system-topic show", eventgrid.SystemTopicArgs{ResourceGroup: "rg", Name: "kv1-events"}); err != nil {
		w.admin("eventgrid system-topic create", eventgrid.SystemTopicArgs{ResourceGroup: "rg", Name: "kv1-events", TopicType: "Microsoft.KeyVault.vaults", Source: v["id"].(string)})
	}
	w.admin("eventgrid system-topic event-subscription create", eventgrid.SubscriptionArgs{ResourceGroup: "rg", SystemTopicName: "kv1-events", Name: ns + "-hook",
		Endpoint: hook + "/events", IncludedEventTypes: []string{"Microsoft.KeyVault.SecretNewVersionCreated"}, SubjectBeginsWith: ns,
		AADTenantID: w.tenant, AADAppIDOrURI: audience})
	nsObj := w.admin("eventgrid namespace create", eventgrid.NamespaceArgs{ResourceGroup: "rg", Name: ns})
	topic := w.admin("eventgrid namespace topic create", eventgrid.NamespaceArgs{ResourceGroup: "rg", NamespaceName: ns, Name: "keyvault"})
	w.admin("eventgrid namespace topic event-subscription create", eventgrid.NamespaceArgs{ResourceGroup: "rg", NamespaceName: ns, TopicName: "keyvault", Name: "kvmount"})
	w.admin("eventgrid system-topic event-subscription create", eventgrid.SubscriptionArgs{ResourceGroup: "rg", SystemTopicName: "kv1-events", Name: ns + "-pull",
		Endpoint: topic["id"].(string), EndpointType: "namespacetopic", EventDeliverySchema: "cloudeventschemav1_0", SubjectBeginsWith: ns})
	sp := w.admin("ad sp create-for-rbac", arm.SPArgs{})
	for _, role := range []string{"EventGrid Data Receiver", "EventGrid Data Sender"} {
		w.admin("role assignment create", arm.RoleArgs{Assignee: sp["appId"].(string), Role: role, Scope: nsObj["id"].(string)})
	}
	cred := w.credential(t, sp)
	endpoint := "https://" + nsObj["topicsConfiguration"].(map[string]any)["hostname"].(string)
	opts := azcore.ClientOptions{Transport: w.sim.HTTPClient()}
	rc, err := aznamespaces.NewReceiverClient(endpoint, "keyvault", "kvmount", cred, &aznamespaces.ReceiverClientOptions{ClientOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := aznamespaces.NewSenderClient(endpoint, "keyvault", cred, &aznamespaces.SenderClientOptions{ClientOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	return rc, sc
}

func (w *world) credential(t *testing.T, sp map[string]any) azcore.TokenCredential {
	t.Helper()
	opts := &azidentity.ClientSecretCredentialOptions{ClientOptions: azcore.ClientOptions{Transport: w.sim.HTTPClient(),
		Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: azsim.LoginURL + "/"}}, DisableInstanceDiscovery: true}
	cred, err := azidentity.NewClientSecretCredential(sp["tenant"].(string), sp["appId"].(string), sp["password"].(string), opts)
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

// token is sp's access token for resource.
func (w *world) token(t *testing.T, sp map[string]any, resource string) string {
	t.Helper()
	tok, err := w.credential(t, sp).GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{resource + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}
