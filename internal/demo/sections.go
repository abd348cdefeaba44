package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
	"kvmount.dev/kvmount/internal/refresh"
)

const mountTimeout = 90 * time.Second

// podIdentity is the seed's first section, then a pod whose label matches
// no binding.
func (d *demo) podIdentity(ctx context.Context) error {
	d.heading("1. Use pod identities (aad-pod-identity)")
	d.say("A user-assigned identity becomes a pod identity; pods labelled aadpodidbinding: <name> get its tokens from the node's NMI.")
	out, err := d.az(ctx, "azsim identity create -g "+rg+" -n pod-identity -o json")
	if err != nil {
		return err
	}
	var id struct{ ClientID, ID string }
	if err := json.Unmarshal([]byte(out), &id); err != nil {
		return fmt.Errorf("identity create printed %q: %w", out, err)
	}
	d.vars["<pod-identity-client-id>"], d.vars["<identity-resource-id>"], d.vars["<name>"] = id.ClientID, id.ID, "pod-identity"
	if err := d.azQuiet(ctx, "azsim aks pod-identity add -g "+rg+" --cluster-name "+aks+" --namespace default -n pod-identity --identity-resource-id <identity-resource-id>"); err != nil {
		return err
	}
	if err := d.grant(ctx, "<pod-identity-client-id>"); err != nil {
		return err
	}
	if err := d.apply(ctx, "spc-podid.yaml", nil); err != nil {
		return err
	}
	if err := d.apply(ctx, "pod-podid.yaml", nil); err != nil {
		return err
	}
	files, err := d.mount(ctx, "busybox-secrets-store-inline-podid", mountTimeout)
	if err != nil {
		return err
	}
	d.row("pod identity", "pod-identity "+short(id.ClientID), "busybox-secrets-store-inline-podid", files, "mounted", true)

	d.say("\nWhat users meet: a pod whose aadpodidbinding label matches no AzureIdentityBinding.")
	if err := d.applyRenamed(ctx, "pod-podid.yaml", "busybox-podid-unbound", map[string]string{"<name>": "no-such-binding"}); err != nil {
		return err
	}
	_, err = d.failure(ctx, "busybox-podid-unbound", "aadpodidbinding", mountTimeout)
	d.row("pod identity, no binding", "(none)", "busybox-podid-unbound", "-", "refused, explained: no AzureIdentityBinding for its label", err == nil)
	return nil
}

// userAssigned is the seed's second section, with the AKS add-on's identity.
func (d *demo) userAssigned(ctx context.Context) error {
	d.heading("2. Use a user-assigned managed identity")
	d.say("The Key Vault secrets provider add-on's identity is assigned to the node pool's scale set.")
	client, err := d.az(ctx, "azsim aks show -g "+rg+" -n "+aks+" --query addonProfiles.azureKeyvaultSecretsProvider.identity.clientId -o tsv")
	if err != nil {
		return err
	}
	d.vars["<client-id>"], d.vars["<identity-client-id>"] = client, client
	if err := d.grant(ctx, "<identity-client-id>"); err != nil {
		return err
	}
	if err := d.apply(ctx, "spc-user-msi.yaml", nil); err != nil {
		return err
	}
	if err := d.apply(ctx, "pod-user-msi.yaml", nil); err != nil {
		return err
	}
	files, err := d.mount(ctx, "busybox-secrets-store-inline-user-msi", mountTimeout)
	if err != nil {
		return err
	}
	d.row("user-assigned MI", "azurekeyvaultsecretsprovider-"+aks+" "+short(client), "busybox-secrets-store-inline-user-msi", files, "mounted", true)
	return nil
}

// systemAssigned shows the two-identities failure first (the scale set has
// only user-assigned identities yet), then the seed's third section.
func (d *demo) systemAssigned(ctx context.Context) error {
	d.heading("3. Use a system-assigned managed identity")
	show, err := d.az(ctx, "azsim aks show -g "+rg+" -n "+aks+" --query nodeResourceGroup -o tsv")
	if err != nil {
		return err
	}
	vmss, err := d.az(ctx, "azsim vmss list -g "+show+" --query [0].name -o tsv")
	if err != nil {
		return err
	}
	d.vars["<resource group>"], d.vars["<vmss scalset name>"] = show, vmss
	d.say("\nWhat users meet first: the scale set has several user-assigned identities (kubelet, add-on, pod identity)")
	d.say("and no system-assigned one yet, and the class leaves userAssignedIdentityID empty.")
	if err := d.apply(ctx, "spc-system-msi.yaml", nil); err != nil {
		return err
	}
	if err := d.applyRenamed(ctx, "pod-system-msi.yaml", "busybox-system-msi-too-early", nil); err != nil {
		return err
	}
	_, err = d.failure(ctx, "busybox-system-msi-too-early", "several user-assigned identities", mountTimeout)
	d.row("VM MI, 2+ user-assigned, no ID", "(IMDS cannot choose)", "busybox-system-msi-too-early", "-", "refused, explained: set userAssignedIdentityID", err == nil)

	d.say("\nThe seed's prerequisite: enable the scale set's system-assigned identity; IMDS then picks it first.")
	if err := d.azQuiet(ctx, "azsim vmss identity assign -g <resource group> -n <vmss scalset name>"); err != nil {
		return err
	}
	out, err := d.az(ctx, "azsim vmss identity show -g <resource group> -n <vmss scalset name> -o yaml")
	if err != nil {
		return err
	}
	var ident struct {
		PrincipalID string `json:"principalId"`
		Type        string `json:"type"`
	}
	if err := yaml.Unmarshal([]byte(out), &ident); err != nil || !strings.HasPrefix(ident.Type, "SystemAssigned") {
		return fmt.Errorf("vmss identity show printed no SystemAssigned identity: %q", out)
	}
	d.vars["<identity-principal-id>"] = ident.PrincipalID
	if err := d.grant(ctx, "<identity-principal-id>"); err != nil {
		return err
	}
	if err := d.apply(ctx, "pod-system-msi.yaml", nil); err != nil {
		return err
	}
	files, err := d.mount(ctx, "busybox-secrets-store-inline-system-msi", mountTimeout)
	if err != nil {
		return err
	}
	d.row("system-assigned MI", "scale set "+short(ident.PrincipalID), "busybox-secrets-store-inline-system-msi", files, "mounted", true)
	return nil
}

// applyRenamed applies a seed pod under another name.
func (d *demo) applyRenamed(ctx context.Context, file, name string, extra map[string]string) error {
	b, err := manifests.ReadFile("manifests/" + file)
	if err != nil {
		return err
	}
	text := string(b)
	for k, v := range extra {
		text = strings.ReplaceAll(text, k, v)
	}
	for k, v := range d.vars {
		text = strings.ReplaceAll(text, k, v)
	}
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(text), &obj); err != nil {
		return err
	}
	obj["metadata"].(map[string]any)["name"] = name
	out, _ := yaml.Marshal(obj)
	d.say("\n$ kubectl apply -f %s   # the seed's pod, named %s%s", file, name, labelNote(extra))
	return d.env.Cluster.Apply(ctx, out)
}

func labelNote(extra map[string]string) string {
	if v, ok := extra["<name>"]; ok {
		return ", labelled aadpodidbinding: " + v
	}
	return ""
}

func short(id string) string {
	if len(id) > 8 {
		return "(" + id[:8] + "…)"
	}
	return id
}

// identityBinding is a fourth section beyond the seed: AKS identity
// binding (useAzureTokenProxy), which upstream now recommends on AKS. The
// managed identity is bound to the cluster once; the cluster's RBAC says
// which service accounts may use it; no federated credential per service
// account (workload identity's limit is 20 per identity).
func (d *demo) identityBinding(ctx context.Context) error {
	d.heading("4. Beyond the article: use identity binding (useAzureTokenProxy)")
	d.say("A user-assigned identity is bound to the cluster; a ClusterRole lets a service account use it; the provider")
	d.say("exchanges the pod's api://AKSIdentityBinding token at the cluster's token proxy.")
	out, err := d.az(ctx, "azsim identity create -g "+rg+" -n kv-reader -o json")
	if err != nil {
		return err
	}
	var id struct{ ClientID, ID string }
	if err := json.Unmarshal([]byte(out), &id); err != nil {
		return fmt.Errorf("identity create printed %q: %w", out, err)
	}
	d.vars["<ib-client-id>"], d.vars["<ib-resource-id>"] = id.ClientID, id.ID
	if err := d.azQuiet(ctx, "azsim aks identity-binding create -g "+rg+" --cluster-name "+aks+" -n kv-reader --managed-identity-resource-id <ib-resource-id>"); err != nil {
		return err
	}
	if err := d.grant(ctx, "<ib-client-id>"); err != nil {
		return err
	}
	for _, f := range []string{"ib-rbac.yaml", "spc-ib.yaml", "pod-ib.yaml"} {
		if err := d.apply(ctx, f, nil); err != nil {
			return err
		}
	}
	files, err := d.mount(ctx, "busybox-secrets-store-inline-ib", mountTimeout)
	if err != nil {
		return err
	}
	d.row("identity binding", "kv-reader "+short(id.ClientID), "busybox-secrets-store-inline-ib", files, "mounted", true)
	return nil
}

// secretSync is a fifth section: the same Key Vault secret in a
// Kubernetes Secret without any pod mounting it (a SecretSync), read by a
// Deployment through envFrom, and following a new version in Key Vault.
func (d *demo) secretSync(ctx context.Context) error {
	d.heading("5. Without a pod: sync into a Kubernetes Secret (SecretSync)")
	d.say("The SecretSync controller (the chart's syncController) keeps Secret app-secrets filled from Key Vault,")
	d.say("as the service account sync-app through workload identity; a Deployment reads it as environment variables.")
	out, err := d.az(ctx, "azsim identity create -g "+rg+" -n sync-reader -o json")
	if err != nil {
		return err
	}
	var id struct{ ClientID string }
	if err := json.Unmarshal([]byte(out), &id); err != nil {
		return fmt.Errorf("identity create printed %q: %w", out, err)
	}
	d.vars["<sync-client-id>"], d.vars["<issuer>"] = id.ClientID, d.env.Cluster.Server
	if err := d.azQuiet(ctx, "azsim identity federated-credential create -g "+rg+" --identity-name sync-reader -n sync-app --issuer <issuer> --subject system:serviceaccount:default:sync-app"); err != nil {
		return err
	}
	if err := d.grant(ctx, "<sync-client-id>"); err != nil {
		return err
	}
	for _, f := range []string{"spc-sync.yaml", "secretsync.yaml", "deployment-envfrom.yaml"} {
		if err := d.apply(ctx, f, nil); err != nil {
			return err
		}
	}
	if _, err := d.secretValue(ctx, "app-secrets", "password", "hello-from-key-vault", syncTimeout); err != nil {
		d.row("SecretSync (no pod)", "sync-reader "+short(id.ClientID), "Secret app-secrets", "-", "not synced: "+err.Error(), false)
		return nil
	}
	env, err := d.exec(ctx, "deploy/app", syncTimeout, "sh", "-c", `echo "$password"`)
	if err != nil {
		d.row("SecretSync (no pod)", "sync-reader "+short(id.ClientID), "Secret app-secrets", "password", "synced; the Deployment did not read it: "+err.Error(), false)
		return nil
	}
	d.say("\nA new version in Key Vault reaches the Secret at the next poll (every 2 minutes), at once with\nKey Vault's events (docs/rotation-events.md), or now when asked for:")
	if _, err := d.az(ctx, "azsim keyvault secret set --vault-name <key-vault-name> -n secret1 --value hello-again --query id -o tsv"); err != nil {
		return err
	}
	start := time.Now()
	if err := d.refresh(ctx, ssv1.Resource, "app-secrets"); err != nil {
		return err
	}
	if _, err := d.secretValue(ctx, "app-secrets", "password", "hello-again", syncTimeout); err != nil {
		d.row("SecretSync (no pod)", "sync-reader "+short(id.ClientID), "Secret app-secrets", "password", "synced; the new version did not arrive: "+err.Error(), false)
		return nil
	}
	d.row("SecretSync (no pod)", "sync-reader "+short(id.ClientID), "Secret app-secrets", "password",
		fmt.Sprintf("synced (%s in the Deployment); new version in %s", strings.TrimSpace(env), time.Since(start).Round(100*time.Millisecond)), true)
	return nil
}

// refresh asks for a refresh now, as `kvmount refresh` does (the same
// annotation, set by the same code).
func (d *demo) refresh(ctx context.Context, gvr schema.GroupVersionResource, name string) error {
	d.say("\n$ kvmount refresh %s/%s", strings.TrimSuffix(gvr.Resource, "s"), name)
	rc, err := d.env.Cluster.RESTConfig()
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	stamp, err := refresh.Ask(ctx, dyn, gvr, "default", name, time.Now())
	if err != nil {
		return err
	}
	d.say("    %s default/%s: refresh requested (%s=%s)", gvr.Resource, name, refresh.RequestAnnotation, stamp)
	return nil
}

// syncTimeout bounds the wait for a synced Secret.
const syncTimeout = 90 * time.Second

// secretValue waits until Secret name's key is want and shows it as a
// user would read it.
func (d *demo) secretValue(ctx context.Context, name, key, want string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		s, err := d.kube.CoreV1().Secrets("default").Get(ctx, name, metav1.GetOptions{})
		if err == nil && string(s.Data[key]) == want {
			d.say("\n$ kubectl get secret %s -o jsonpath='{.data.%s}' | base64 -d\n    %s", name, key, want)
			return want, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("Secret %s has no %s = %q after %s (events: %s)", name, key, want, timeout, strings.Join(d.syncEvents(ctx, name), " | "))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// syncEvents are a SecretSync's Events.
func (d *demo) syncEvents(ctx context.Context, name string) []string {
	list, err := d.kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String()})
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.Kind == "SecretSync" {
			out = append(out, e.Reason+": "+e.Message)
		}
	}
	return out
}
