package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"kvmount.dev/kvmount/internal/demo"
	"kvmount.dev/kvmount/internal/localenv"
)

// TestSeedThreeMethods plays the demo: the seed's pod identity,
// user-assigned and system-assigned sections and identity binding through
// real kubelet and containers, plus a pod without a matching binding and a
// node with several user-assigned identities and no
// userAssignedIdentityID, each refused with its event.
func TestSeedThreeMethods(t *testing.T) {
	fail := restated(t)
	env, _ := startEnvWith(t, 2, func(c *localenv.Config) { c.SyncController = true })
	var out strings.Builder
	rows, err := demo.Play(context.Background(), env, io.MultiWriter(&out, testLog{t}))
	if err != nil {
		fail("the demo stopped: %v", err)
		t.FailNow()
	}
	want := map[string]bool{"pod identity": true, "pod identity, no binding": true, "user-assigned MI": true,
		"VM MI, 2+ user-assigned, no ID": true, "system-assigned MI": true, "identity binding": true, "SecretSync (no pod)": true}
	for _, r := range rows {
		if !want[r.Method] || !r.OK {
			fail("row %+v", r)
		}
		delete(want, r.Method)
		if strings.HasSuffix(r.Method, "MI") || r.Method == "pod identity" || r.Method == "identity binding" {
			if r.Objects != "key1, secret1" {
				fail("%s mounted %q, want key1, secret1", r.Method, r.Objects)
			}
		}
	}
	if len(want) > 0 {
		fail("missing rows: %v", want)
	}
	// Each method ends with the article's validation, from inside the
	// container, shown as the user types it.
	for _, pod := range []string{"podid", "user-msi", "system-msi", "ib"} {
		check := "$ kubectl exec busybox-secrets-store-inline-" + pod + " -- ls /mnt/secrets-store/\n    key1\n    secret1\n"
		if !strings.Contains(out.String(), check) {
			fail("the demo does not show %q", check)
		}
	}
}

// restated returns an Errorf that also repeats its messages once every
// other cleanup has run: a failed end-to-end test prints the tails of
// its components' logs after its own messages, and CI keeps only the end
// of the output. Call it before the environment starts, so that its
// cleanup runs last.
func restated(t *testing.T) func(format string, args ...any) {
	var msgs []string
	t.Cleanup(func() {
		if len(msgs) > 0 {
			t.Logf("%s failed, restated after the logs:\n  %s", t.Name(), strings.Join(msgs, "\n  "))
		}
	})
	return func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		msgs = append(msgs, msg)
		t.Error(msg)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// podWithClass makes a pod (the seed's shape) mounting class, optionally
// with a service account and a nodePublishSecretRef.
func podWithClass(name, class, sa, secretRef string) *corev1.Pod {
	ro := true
	vol := corev1.Volume{Name: "secrets-store01-inline", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
		Driver: "secrets-store.csi.k8s.io", ReadOnly: &ro, VolumeAttributes: map[string]string{"secretProviderClass": class}}}}
	if secretRef != "" {
		vol.CSI.NodePublishSecretRef = &corev1.LocalObjectReference{Name: secretRef}
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{ServiceAccountName: sa,
		Containers: []corev1.Container{{Name: "busybox", Image: "k8s.gcr.io/e2e-test-images/busybox:1.29-1", Command: []string{"/bin/sleep", "10000"},
			VolumeMounts: []corev1.VolumeMount{{Name: vol.Name, MountPath: "/mnt/secrets-store", ReadOnly: true}}}},
		Volumes: []corev1.Volume{vol}}}
}

func classYAML(name, params string) []byte {
	return []byte(`apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: ` + name + `
spec:
  provider: azure
  parameters:
` + params + `
    objects: |
      array:
        - |
          objectName: secret1
          objectType: secret
`)
}

func waitSecretFile(t *testing.T, env *localenv.Env, cs kubernetes.Interface, pod, want string) {
	t.Helper()
	p := scheduledPod(t, cs, "default", pod)
	dir := volumeDir(env, p, "secrets-store01-inline")
	waitFor(t, 90*time.Second, "secret1 in "+pod, func() (bool, string) {
		b, _ := os.ReadFile(filepath.Join(dir, "secret1"))
		return string(b) == want, strings.Join(events(cs, "default", pod), " | ")
	})
	waitContainerFile(t, env, pod, "/mnt/secrets-store/secret1", want)
}

// TestWorkloadIdentity: the pod's projected service-account token (from
// the CSIDriver's tokenRequests) is exchanged at azsim's Entra ID, which
// verifies it against the local cluster's issuer; a pod of another service
// account is refused.
func TestWorkloadIdentity(t *testing.T) {
	env, cs := startEnv(t, 1)
	ctx := context.Background()
	vaultWithSecret1(t, env, "kvmount-wi", "from-workload-identity")
	id := azsim(t, env, "identity create", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": "wi"})
	azsim(t, env, "identity federated-credential create", map[string]any{"resourceGroup": localenv.ResourceGroup, "identityName": "wi", "name": "app",
		"issuer": env.Cluster.Server, "subject": "system:serviceaccount:default:app"})
	azsim(t, env, "keyvault set-policy", map[string]any{"name": "kvmount-wi", "spn": id["clientId"], "secretPermissions": []string{"get"}})
	params := "    clientID: " + id["clientId"].(string) + "\n    keyvaultName: kvmount-wi\n    tenantId: " + env.TenantID
	if err := env.Cluster.Apply(ctx, classYAML("wi", params)); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"app", "other"} {
		if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, podWithClass("wi-"+sa, "wi", sa, ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitSecretFile(t, env, cs, "wi-app", "from-workload-identity")
	waitFor(t, 60*time.Second, "the other service account refused", func() (bool, string) {
		ev := strings.Join(events(cs, "default", "wi-other"), " | ")
		return strings.Contains(ev, "no federated credential for service account default/other"), ev
	})
	// Revoked: the federated credential is deleted. A new pod of the
	// service account is refused at once (no cached token answers its
	// first mount), and the running pod stops receiving new versions.
	azsim(t, env, "identity federated-credential delete", map[string]any{"resourceGroup": localenv.ResourceGroup, "identityName": "wi", "name": "app"})
	assertRevoked(t, env, cs, "kvmount-wi", "wi-app", podWithClass("wi-app-new", "wi", "app", ""),
		"no federated credential for service account default/app", "from-workload-identity")
}

// assertRevoked checks what revoking a running pod's identity does: a new
// pod of the same service account is refused with an explanation, and the
// running pod's next refresh fails (SecretRotationFailed) and keeps its
// files, although Key Vault has a new version.
func assertRevoked(t *testing.T, env *localenv.Env, cs kubernetes.Interface, vault, running string, newPod *corev1.Pod, why, old string) {
	t.Helper()
	ctx := context.Background()
	azsim(t, env, "keyvault secret set", map[string]any{"vaultName": vault, "name": "secret1", "value": "after-revocation"})
	if _, err := cs.CoreV1().Pods("default").Create(ctx, newPod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the new pod refused after the revocation", func() (bool, string) {
		ev := strings.Join(events(cs, "default", newPod.Name), " | ")
		return strings.Contains(ev, why), ev
	})
	waitFor(t, 60*time.Second, "the running pod's refresh refused", func() (bool, string) {
		ev := strings.Join(events(cs, "default", running), " | ")
		return strings.Contains(ev, "SecretRotationFailed") && strings.Contains(ev, why), ev
	})
	p := scheduledPod(t, cs, "default", running)
	if b, _ := os.ReadFile(filepath.Join(volumeDir(env, p, "secrets-store01-inline"), "secret1")); string(b) != old {
		t.Errorf("the running pod of a revoked identity has secret1 = %q, want the version it had (%q)", b, old)
	}
}

// TestServicePrincipal mounts with a nodePublishSecretRef Secret holding a
// service principal's clientid and clientsecret.
func TestServicePrincipal(t *testing.T) {
	env, cs := startEnv(t, 1)
	ctx := context.Background()
	vaultWithSecret1(t, env, "kvmount-sp", "from-service-principal")
	sp := azsim(t, env, "ad sp create-for-rbac", map[string]any{"name": "csi"})
	azsim(t, env, "keyvault set-policy", map[string]any{"name": "kvmount-sp", "spn": sp["appId"], "secretPermissions": []string{"get"}})
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "secrets-store-creds",
		Labels: map[string]string{"secrets-store.csi.k8s.io/used": "true"}},
		StringData: map[string]string{"clientid": sp["appId"].(string), "clientsecret": sp["password"].(string)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := env.Cluster.Apply(ctx, classYAML("sp", "    keyvaultName: kvmount-sp\n    tenantId: "+env.TenantID)); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, podWithClass("sp-pod", "sp", "", "secrets-store-creds"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSecretFile(t, env, cs, "sp-pod", "from-service-principal")
	assertNoCanaryInLogs(t, env, sp["password"].(string))
}

// TestIdentityBinding: AKS identity binding (useAzureTokenProxy). The
// managed identity is bound to the cluster (az aks identity-binding
// create), the cluster's RBAC lets one service account use it, and the
// provider exchanges that pod's api://AKSIdentityBinding token at the
// token proxy, whose name it computes from the API server's certificate.
// No federated credential is made. A pod of another service account is
// refused with the RBAC it lacks.
func TestIdentityBinding(t *testing.T) {
	env, cs := startEnv(t, 1)
	ctx := context.Background()
	vaultWithSecret1(t, env, "kvmount-ib", "from-identity-binding")
	id := azsim(t, env, "identity create", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": "ib"})
	azsim(t, env, "aks identity-binding create", map[string]any{"resourceGroup": localenv.ResourceGroup, "clusterName": localenv.ClusterName,
		"name": "ib", "managedIdentityResourceId": id["id"]})
	azsim(t, env, "keyvault set-policy", map[string]any{"name": "kvmount-ib", "spn": id["clientId"], "secretPermissions": []string{"get"}})
	clientID := id["clientId"].(string)
	rbac := fmt.Sprintf(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: use-ib}
rules:
- verbs: [use-managed-identity]
  apiGroups: [cid.wi.aks.azure.com]
  resources: [%q]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: use-ib}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: use-ib}
subjects: [{kind: ServiceAccount, name: ib-app, namespace: default}]
`, clientID)
	if err := env.Cluster.Apply(ctx, []byte(rbac)); err != nil {
		t.Fatal(err)
	}
	params := "    useAzureTokenProxy: \"true\"\n    clientID: " + clientID + "\n    keyvaultName: kvmount-ib\n    tenantId: " + env.TenantID
	if err := env.Cluster.Apply(ctx, classYAML("ib", params)); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"ib-app", "ib-other"} {
		if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, podWithClass(sa, "ib", sa, ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitSecretFile(t, env, cs, "ib-app", "from-identity-binding")
	waitFor(t, 60*time.Second, "the other service account refused", func() (bool, string) {
		ev := strings.Join(events(cs, "default", "ib-other"), " | ")
		return strings.Contains(ev, "system:serviceaccount:default:ib-other is not allowed to use managed identity "+clientID) &&
			strings.Contains(ev, "use-managed-identity"), ev
	})
	// Revoked: the service account may no longer use the identity (its
	// ClusterRoleBinding is deleted). The token proxy decides on every
	// exchange: a new pod is refused at once, the running one within a
	// poll.
	if err := cs.RbacV1().ClusterRoleBindings().Delete(ctx, "use-ib", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	assertRevoked(t, env, cs, "kvmount-ib", "ib-app", podWithClass("ib-app-new", "ib", "ib-app", ""),
		"system:serviceaccount:default:ib-app is not allowed to use managed identity "+clientID, "from-identity-binding")
}
