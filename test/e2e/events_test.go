package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
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
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	spcv1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	azsimpkg "kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/localcluster"
	"kvmount.dev/kvmount/internal/localenv"
)

// The Event Grid resources of the events test.
const (
	eventsVault     = "kvmount-events"
	eventsNamespace = "kvm-events"
	eventsAudience  = "api://kvmount-events"
	eventsNodePort  = 31443
)

// TestPushRotation: Key Vault's events, from azsim's Event Grid to the
// chart's sync controller by both routes (its Entra-protected webhook
// behind a NodePort Service, and a namespace topic it pulls from with its
// own workload identity), with every poll set to an hour:
//   - a new version reaches the pods on both nodes and the synced Secret
//     without a poll, with one Key Vault read per reader and none of the
//     unchanged object, though the event arrives twice (a duplicate);
//   - forged deliveries (no token, another app's token) and an event
//     about a vault no class reads are refused and counted;
//   - with the controller down, Event Grid retries the webhook and the
//     change arrives once it is back;
//   - refresh on demand (`kvmount refresh`) brings a change no event
//     announced, and is refused to whoever may not patch the class.
func TestPushRotation(t *testing.T) {
	env, cs := startEnvWith(t, 2, func(c *localenv.Config) {
		c.SyncController, c.RotationPollInterval, c.EventRetryScale = true, time.Hour, 0.02
	})
	ctx := context.Background()
	clientID := eventsWorld(t, env, cs)
	webhookTLS(t, env, cs)
	reader := controllerIdentity(t, env)
	if err := env.UpgradeChart(ctx, map[string]any{"syncController": map[string]any{"events": map[string]any{
		"pull": map[string]any{"enabled": true, "endpoint": "https://" + eventsNamespace + "." + azsimpkg.EventGridSuffix, "topic": "keyvault",
			"subscription": "kvmount", "clientId": reader, "tenantId": env.TenantID},
		"webhook": map[string]any{"enabled": true, "service": map[string]any{"type": "NodePort", "nodePort": eventsNodePort},
			"tlsSecretName": "events-webhook-tls", "tenantId": env.TenantID, "audiences": []string{eventsAudience}},
	}}}); err != nil {
		t.Fatal(err)
	}
	waitControllers(t, cs, 2)
	hook := fmt.Sprintf("https://%s:%d/events", env.Cluster.Nodes[0].IP, eventsNodePort)
	subscribe(t, env, hook)
	pods := eventsPods(t, env, cs, clientID)
	for _, p := range pods {
		waitContainerFile(t, env, p, "/mnt/secrets-store/secret1", "v1")
	}
	waitSyncedKey(t, cs, "events-synced", "password", "v1")

	t.Run("a new version pushed", func(t *testing.T) {
		azsim(t, env, "keyvault stats", map[string]any{"name": eventsVault, "reset": true})
		start := time.Now()
		azsim(t, env, "keyvault secret set", map[string]any{"vaultName": eventsVault, "name": "secret1", "value": "v2"})
		for _, p := range pods {
			waitContainerFile(t, env, p, "/mnt/secrets-store/secret1", "v2")
		}
		waitSyncedKey(t, cs, "events-synced", "password", "v2")
		t.Logf("secret set → files in both pods and the synced Secret: %s (polls: 1h)", time.Since(start).Round(time.Millisecond))
		waitFor(t, 30*time.Second, "the event counted once accepted, once a duplicate", func() (bool, string) {
			m := controllerMetrics(t, env, cs)
			return m["result=accepted"] == 1 && m["result=duplicate"] == 1, fmt.Sprint(m)
		})
		// One read per node (one principal) and one by the controller; the
		// unchanged object is served as mounted.
		if gets := vaultGets(t, env); gets != 3 {
			t.Errorf("%v Key Vault reads for one change read by two nodes and one SecretSync; want 3", gets)
		}
		for _, p := range pods {
			waitFor(t, 30*time.Second, "the pod told", func() (bool, string) {
				e := strings.Join(events(cs, "default", p), " | ")
				return strings.Contains(e, "SecretRotationComplete"), e
			})
			waitContainerFile(t, env, p, "/mnt/secrets-store/other", "o1")
		}
	})

	t.Run("forged events refused", func(t *testing.T) {
		sp := azsim(t, env, "ad sp create-for-rbac", map[string]any{})
		client := webhookClient(t, env)
		body := `[{"id":"forged","topic":"/subscriptions/x/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/` + eventsVault + `","subject":"secret1","eventType":"Microsoft.KeyVault.SecretNewVersionCreated","eventTime":"2026-12-07T10:00:00Z","data":{"VaultName":"` + eventsVault + `","ObjectType":"Secret","ObjectName":"secret1","Version":"x"},"dataVersion":"1","metadataVersion":"1"}]`
		for _, tok := range []string{"", spToken(t, env, sp, eventsAudience)} {
			req, _ := http.NewRequest(http.MethodPost, hook, strings.NewReader(body))
			req.Header.Set("aeg-event-type", "Notification")
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := client.Do(req)
			if err != nil {
				out, _ := env.Cluster.Kubectl(context.Background(), "logs", "-n", localenv.ReleaseNamespace, "-l", "app=secrets-store-sync-controller", "-c", "manager", "--tail", "30").CombinedOutput()
				t.Fatalf("token %v: %v\n%s", tok != "", err, out)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("a forged delivery got %d, want 401", resp.StatusCode)
			}
		}
		publishElsewhere(t, env, sp)
		waitFor(t, 30*time.Second, "the refusals counted", func() (bool, string) {
			m := controllerMetrics(t, env, cs)
			return m["result=unauthenticated"] == 2 && m["result=unknown_vault"] == 1, fmt.Sprint(m)
		})
	})

	t.Run("the controller may only record changes on a class", func(t *testing.T) { classGuard(t, env) })

	t.Run("retried while the controller is down", func(t *testing.T) {
		scaleControllers(t, cs, 0)
		before := hookStats(t, env)
		azsim(t, env, "keyvault secret set", map[string]any{"vaultName": eventsVault, "name": "secret1", "value": "v3"})
		waitFor(t, 30*time.Second, "Event Grid retrying the webhook", func() (bool, string) {
			st := hookStats(t, env)
			return st["Failed"] > before["Failed"], fmt.Sprint(st)
		})
		scaleControllers(t, cs, 2)
		for _, p := range pods {
			waitContainerFile(t, env, p, "/mnt/secrets-store/secret1", "v3")
		}
		waitSyncedKey(t, cs, "events-synced", "password", "v3")
		waitFor(t, 60*time.Second, "the retried delivery", func() (bool, string) {
			st := hookStats(t, env)
			return st["Delivered"] > before["Delivered"], fmt.Sprint(st)
		})
	})

	t.Run("refresh on demand", func(t *testing.T) {
		for _, name := range []string{"to-hook", "to-pull"} {
			azsim(t, env, "eventgrid system-topic event-subscription delete", map[string]any{"resourceGroup": localenv.ResourceGroup,
				"systemTopicName": eventsVault + "-events", "name": name})
		}
		azsim(t, env, "keyvault secret set", map[string]any{"vaultName": eventsVault, "name": "secret1", "value": "v4"})
		viewer, err := env.Cluster.ServiceAccountKubeconfig("default", "viewer")
		if err != nil {
			t.Fatal(err)
		}
		out, err := kvmountCLI(t, "refresh", "secretproviderclass/events-class", "-n", "default", "--kubeconfig", viewer)
		if err == nil || !strings.Contains(out, "needs the patch verb") {
			t.Fatalf("a refresh by an account that may not patch the class: %v\n%s", err, out)
		}
		if out, err := kvmountCLI(t, "refresh", "spc/events-class", "-n", "default", "--kubeconfig", env.Cluster.KubeconfigPath); err != nil {
			t.Fatalf("kvmount refresh: %v\n%s", err, out)
		}
		for _, p := range pods {
			waitContainerFile(t, env, p, "/mnt/secrets-store/secret1", "v4")
		}
		waitSyncedKey(t, cs, "events-synced", "password", "v4")
	})
}

// eventsWorld makes the vault (secret1 and other), a workload identity for
// the app's service account, and the RBAC of the test's viewer; it
// returns the identity's client ID.
func eventsWorld(t *testing.T, env *localenv.Env, cs kubernetes.Interface) string {
	t.Helper()
	vaultWithSecret1(t, env, eventsVault, "v1")
	azsim(t, env, "keyvault secret set", map[string]any{"vaultName": eventsVault, "name": "other", "value": "o1"})
	id := azsim(t, env, "identity create", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": "events-app"})
	azsim(t, env, "identity federated-credential create", map[string]any{"resourceGroup": localenv.ResourceGroup, "identityName": "events-app", "name": "app",
		"issuer": env.Cluster.Server, "subject": "system:serviceaccount:default:app"})
	azsim(t, env, "keyvault set-policy", map[string]any{"name": eventsVault, "spn": id["clientId"], "secretPermissions": []string{"get"}})
	for _, sa := range []string{"app", "viewer"} {
		if _, err := cs.CoreV1().ServiceAccounts("default").Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The viewer may read classes, not patch them.
	if err := env.Cluster.Apply(context.Background(), []byte(`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: class-viewer, namespace: default}
rules:
- apiGroups: ["secrets-store.csi.x-k8s.io"]
  resources: ["secretproviderclasses"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: class-viewer, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: class-viewer}
subjects: [{kind: ServiceAccount, name: viewer, namespace: default}]
`)); err != nil {
		t.Fatal(err)
	}
	return id["clientId"].(string)
}

// webhookTLS stores the webhook's serving certificate (from the cluster's
// CA, which azsim trusts, for every node's address) as the chart's TLS
// Secret.
func webhookTLS(t *testing.T, env *localenv.Env, cs kubernetes.Interface) {
	t.Helper()
	var names []string
	for _, n := range env.Cluster.Nodes {
		names = append(names, n.IP)
	}
	certFile, keyFile, err := env.Cluster.IssueServingCert("events-webhook", names)
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "events-webhook-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": mustRead(t, certFile), "tls.key": mustRead(t, keyFile)}}
	if _, err := cs.CoreV1().Secrets(localenv.ReleaseNamespace).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// controllerIdentity is the sync controller's own workload identity, with
// the receiver role on the Event Grid namespace (made here).
func controllerIdentity(t *testing.T, env *localenv.Env) string {
	t.Helper()
	id := azsim(t, env, "identity create", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": "events-reader"})
	azsim(t, env, "identity federated-credential create", map[string]any{"resourceGroup": localenv.ResourceGroup, "identityName": "events-reader", "name": "controller",
		"issuer": env.Cluster.Server, "subject": "system:serviceaccount:" + localenv.ReleaseNamespace + ":secrets-store-sync-controller-manager"})
	ns := azsim(t, env, "eventgrid namespace create", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": eventsNamespace})
	azsim(t, env, "eventgrid namespace topic create", map[string]any{"resourceGroup": localenv.ResourceGroup, "namespaceName": eventsNamespace, "name": "keyvault"})
	azsim(t, env, "eventgrid namespace topic event-subscription create", map[string]any{"resourceGroup": localenv.ResourceGroup, "namespaceName": eventsNamespace,
		"topicName": "keyvault", "name": "kvmount"})
	azsim(t, env, "role assignment create", map[string]any{"assignee": id["clientId"], "role": "EventGrid Data Receiver", "scope": ns["id"]})
	return id["clientId"].(string)
}

// subscribe sends the vault's new secret versions to the webhook
// (Entra-protected) and to the namespace topic.
func subscribe(t *testing.T, env *localenv.Env, hook string) {
	t.Helper()
	v := azsim(t, env, "keyvault show", map[string]any{"name": eventsVault})
	topic := eventsVault + "-events"
	azsim(t, env, "eventgrid system-topic create", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": topic,
		"topicType": "Microsoft.KeyVault.vaults", "source": v["id"]})
	azsim(t, env, "eventgrid system-topic event-subscription create", map[string]any{"resourceGroup": localenv.ResourceGroup, "systemTopicName": topic,
		"name": "to-hook", "endpoint": hook, "includedEventTypes": []string{"Microsoft.KeyVault.SecretNewVersionCreated"},
		"azureActiveDirectoryTenantId": env.TenantID, "azureActiveDirectoryApplicationIdOrUri": eventsAudience})
	nsTopic := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.EventGrid/namespaces/%s/topics/keyvault",
		subscriptionID(t, env), localenv.ResourceGroup, eventsNamespace)
	azsim(t, env, "eventgrid system-topic event-subscription create", map[string]any{"resourceGroup": localenv.ResourceGroup, "systemTopicName": topic,
		"name": "to-pull", "endpoint": nsTopic, "endpointType": "namespacetopic", "eventDeliverySchema": "cloudeventschemav1_0"})
}

func subscriptionID(t *testing.T, env *localenv.Env) string {
	t.Helper()
	return azsim(t, env, "account show", map[string]any{})["id"].(string)
}

// eventsPods runs a pod on each node mounting the class (secret1 and
// other), and a SecretSync of secret1.
func eventsPods(t *testing.T, env *localenv.Env, cs kubernetes.Interface, clientID string) []string {
	t.Helper()
	ctx := context.Background()
	class := `apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: events-class, namespace: default}
spec:
  provider: azure
  parameters:
    clientID: ` + clientID + `
    keyvaultName: ` + eventsVault + `
    tenantId: ` + env.TenantID + `
    objects: |
      array:
        - |
          objectName: secret1
          objectType: secret
        - |
          objectName: other
          objectType: secret
`
	if err := env.Cluster.Apply(ctx, []byte(class)); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i, n := range env.Cluster.Nodes {
		p := podWithClass(fmt.Sprintf("events-%d", i), "events-class", "app", "")
		p.Spec.NodeName = n.Name
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		names = append(names, p.Name)
	}
	applySync(t, env, "events-synced", "events-class", "app")
	return names
}

// controllerMetrics sums kvmount_events_total by result over the
// controller replicas.
func controllerMetrics(t *testing.T, env *localenv.Env, cs kubernetes.Interface) map[string]float64 {
	t.Helper()
	pods, err := cs.CoreV1().Pods(localenv.ReleaseNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app=secrets-store-sync-controller"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, p := range pods.Items {
		if p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			continue
		}
		fams := scrape(t, p.Status.PodIP+":8085")
		f := fams["kvmount_events_total"]
		if f == nil {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					out["result="+l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// vaultGets is the vault's object reads since its counters were reset.
func vaultGets(t *testing.T, env *localenv.Env) float64 {
	t.Helper()
	st := azsim(t, env, "keyvault stats", map[string]any{"name": eventsVault})
	g, _ := st["gets"].(float64)
	return g
}

// hookStats are azsim's counters of the webhook subscription.
func hookStats(t *testing.T, env *localenv.Env) map[string]float64 {
	t.Helper()
	all := azsim(t, env, "eventgrid stats", map[string]any{})
	out := map[string]float64{}
	for k, v := range all {
		if strings.HasSuffix(k, "/to-hook") {
			for name, n := range v.(map[string]any) {
				out[name], _ = n.(float64)
			}
		}
	}
	return out
}

func scaleControllers(t *testing.T, cs kubernetes.Interface, n int32) {
	t.Helper()
	ctx := context.Background()
	sc, err := cs.AppsV1().Deployments(localenv.ReleaseNamespace).GetScale(ctx, "secrets-store-sync-controller-manager", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sc.Spec.Replicas = n
	if _, err := cs.AppsV1().Deployments(localenv.ReleaseNamespace).UpdateScale(ctx, "secrets-store-sync-controller-manager", sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitControllers(t, cs, int(n))
}

// waitControllers waits until exactly n controller pods are ready (none
// terminating).
func waitControllers(t *testing.T, cs kubernetes.Interface, n int) {
	t.Helper()
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d sync controller pods ready", n), func() (bool, string) {
		pods, err := cs.CoreV1().Pods(localenv.ReleaseNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app=secrets-store-sync-controller"})
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				return false, p.Name + " terminating"
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready == n && len(pods.Items) == n, fmt.Sprintf("%d of %d ready", ready, len(pods.Items))
	})
}

// webhookClient trusts the cluster's CA, which issued the webhook's
// certificate.
func webhookClient(t *testing.T, env *localenv.Env) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mustRead(t, env.Cluster.CAPath()))
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Proxy: nil}, Timeout: 30 * time.Second}
}

// azsimClient reaches azsim as a client on this machine does.
func azsimClient(t *testing.T, env *localenv.Env) *http.Client {
	t.Helper()
	ep, err := azsimpkg.ReadEndpoints(env.AzsimDir)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := azsimpkg.NewTransport(ep.Address, ep.CA)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: tr}
}

func spCredential(t *testing.T, env *localenv.Env, sp map[string]any) azcore.TokenCredential {
	t.Helper()
	opts := &azidentity.ClientSecretCredentialOptions{ClientOptions: azcore.ClientOptions{Transport: azsimClient(t, env),
		Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: azsimpkg.LoginURL + "/"}}, DisableInstanceDiscovery: true}
	cred, err := azidentity.NewClientSecretCredential(sp["tenant"].(string), sp["appId"].(string), sp["password"].(string), opts)
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

// spToken is sp's token for resource: the right audience, the wrong app.
func spToken(t *testing.T, env *localenv.Env, sp map[string]any, resource string) string {
	t.Helper()
	tok, err := spCredential(t, env, sp).GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{resource + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// publishElsewhere publishes, as a sender with rights on the topic, an
// event about a vault no class reads.
func publishElsewhere(t *testing.T, env *localenv.Env, sp map[string]any) {
	t.Helper()
	ns := azsim(t, env, "eventgrid namespace show", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": eventsNamespace})
	azsim(t, env, "role assignment create", map[string]any{"assignee": sp["appId"], "role": "EventGrid Data Sender", "scope": ns["id"]})
	sender, err := aznamespaces.NewSenderClient("https://"+eventsNamespace+"."+azsimpkg.EventGridSuffix, "keyvault", spCredential(t, env, sp),
		&aznamespaces.SenderClientOptions{ClientOptions: azcore.ClientOptions{Transport: azsimClient(t, env)}})
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := messaging.NewCloudEvent("/subscriptions/x/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/nowhere", "Microsoft.KeyVault.SecretNewVersionCreated",
		map[string]string{"VaultName": "nowhere", "ObjectType": "Secret", "ObjectName": "secret1"}, nil)
	if _, err := sender.SendEvent(context.Background(), &ev, nil); err != nil {
		t.Fatal(err)
	}
}

// kvmountCLI runs the kvmount command.
func kvmountCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := localcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(bin, "kvmount")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("kvmount missing in %s: run make build", bin)
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	return string(out), err
}

// classGuard: as the sync controller, recording a change on a class is
// allowed; changing its spec, its labels or another annotation is refused
// by the chart's admission policy, and deleting it by RBAC.
func classGuard(t *testing.T, env *localenv.Env) {
	rc := asSyncController(t, env)
	dyn := dynamic.NewForConfigOrDie(rc)
	ctx := context.Background()
	classes := dyn.Resource(spcv1.SecretProviderClassResource).Namespace("default")
	patch := func(body string) error {
		_, err := classes.Patch(ctx, "events-class", types.MergePatchType, []byte(body), metav1.PatchOptions{})
		return err
	}
	if err := patch(`{"metadata":{"annotations":{"secrets-store.kvmount.dev/changed":"[]"}}}`); err != nil {
		t.Errorf("recording changes refused: %v", err)
	}
	for name, do := range map[string]func() error{
		"the spec":           func() error { return patch(`{"spec":{"parameters":{"keyvaultName":"elsewhere"}}}`) },
		"a label":            func() error { return patch(`{"metadata":{"labels":{"x":"y"}}}`) },
		"another annotation": func() error { return patch(`{"metadata":{"annotations":{"other":"x"}}}`) },
	} {
		err := do()
		if err == nil || !strings.Contains(err.Error(), "kvmount-secrets-sync-classes") {
			t.Errorf("changing %s as the controller: %v; want the admission policy kvmount-secrets-sync-classes to refuse it", name, err)
		}
	}
	// RBAC gives it no delete; the policy would refuse it too.
	if err := classes.Delete(ctx, "events-class", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsForbidden(err) {
		t.Errorf("deleting a class as the controller: %v; want it forbidden", err)
	}
}
