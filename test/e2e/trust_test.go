package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"kvmount.dev/kvmount/internal/localenv"
)

// TestPodIdentityUnbinding: once the pod's aadpodidbinding label is
// removed, its next refresh is refused with the explanation, and it never
// mounts a version created after the unbinding (the pod-identity token was
// once cached for a day).
func TestPodIdentityUnbinding(t *testing.T) {
	env, cs := startEnv(t, 1)
	ctx := context.Background()
	vaultWithSecret1(t, env, "kvmount-podid", "while-bound")
	id := azsim(t, env, "identity create", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": "pod-id"})
	azsim(t, env, "aks pod-identity add", map[string]any{"resourceGroup": localenv.ResourceGroup, "clusterName": localenv.ClusterName,
		"namespace": "default", "name": "pod-id", "identityResourceId": id["id"]})
	azsim(t, env, "keyvault set-policy", map[string]any{"name": "kvmount-podid", "spn": id["clientId"], "secretPermissions": []string{"get"}})
	params := "    usePodIdentity: \"true\"\n    keyvaultName: kvmount-podid\n    tenantId: " + env.TenantID
	if err := env.Cluster.Apply(ctx, classYAML("podid", params)); err != nil {
		t.Fatal(err)
	}
	pod := podWithClass("bound-pod", "podid", "", "")
	pod.Labels = map[string]string{"aadpodidbinding": "pod-id"}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSecretFile(t, env, cs, "bound-pod", "while-bound")

	patch := []byte(`{"metadata":{"labels":{"aadpodidbinding":null}}}`)
	if _, err := cs.CoreV1().Pods("default").Patch(ctx, "bound-pod", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	azsim(t, env, "keyvault secret set", map[string]any{"vaultName": "kvmount-podid", "name": "secret1", "value": "after-unbinding"})
	waitFor(t, 60*time.Second, "the refresh refused with the explanation", func() (bool, string) {
		ev := strings.Join(events(cs, "default", "bound-pod"), " | ")
		return strings.Contains(ev, "SecretRotationFailed") && strings.Contains(ev, "NMI found no identity for pod default/bound-pod"), ev
	})
	p := scheduledPod(t, cs, "default", "bound-pod")
	time.Sleep(6 * time.Second) // three more refresh epochs
	if b, _ := os.ReadFile(filepath.Join(volumeDir(env, p, "secrets-store01-inline"), "secret1")); string(b) != "while-bound" {
		t.Errorf("the unbound pod's file holds %q, want the last version it was allowed to read", b)
	}
}

// TestSyncedSecretOwnership runs under OwnerReferencesPermissionEnforcement
// (enabled in the local API server) with the driver's own RBAC: two pods
// of one class both own its synced Secret; a Secret of the same name that
// the driver did not create is left alone, and the pods are told why.
func TestSyncedSecretOwnership(t *testing.T) {
	env, cs := startEnv(t, 1)
	ctx := context.Background()
	setupSeedVault(t, env, "synced-value")
	theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "someone-elses"}, StringData: map[string]string{"password": "do-not-touch"}}
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, theirs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	addon := azsim(t, env, "aks show", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": localenv.ClusterName})["addonProfiles"].(map[string]any)["azureKeyvaultSecretsProvider"].(map[string]any)["identity"].(map[string]any)["clientId"].(string)
	class := `apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: synced
spec:
  provider: azure
  secretObjects:
  - secretName: shared-secret
    type: Opaque
    data: [{objectName: secret1, key: password}]
  - secretName: someone-elses
    type: Opaque
    data: [{objectName: secret1, key: password}]
  parameters:
    useVMManagedIdentity: "true"
    userAssignedIdentityID: ` + addon + `
    keyvaultName: kvmount-e2e
    tenantId: ` + env.TenantID + `
    objects: |
      array:
        - |
          objectName: secret1
          objectType: secret
`
	if err := env.Cluster.Apply(ctx, []byte(class)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"owner-a", "owner-b"} {
		if _, err := cs.CoreV1().Pods("default").Create(ctx, podWithClass(name, "synced", "", ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 90*time.Second, "both pods owning the synced Secret", func() (bool, string) {
		s, err := cs.CoreV1().Secrets("default").Get(ctx, "shared-secret", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(s.OwnerReferences) == 2 && string(s.Data["password"]) == "synced-value", strings.Join(events(cs, "default", "owner-b"), " | ")
	})
	waitFor(t, 30*time.Second, "the refusal explained to the pod", func() (bool, string) {
		ev := strings.Join(events(cs, "default", "owner-a"), " | ")
		return strings.Contains(ev, "FailedToSyncSecret") && strings.Contains(ev, "was not created by the Secrets Store CSI driver"), ev
	})
	s, err := cs.CoreV1().Secrets("default").Get(ctx, "someone-elses", metav1.GetOptions{})
	if err != nil || string(s.Data["password"]) != "do-not-touch" || len(s.OwnerReferences) != 0 || s.Labels["secrets-store.csi.k8s.io/managed"] != "" {
		t.Errorf("the driver touched a Secret it did not create: %+v %v", s, err)
	}
}
