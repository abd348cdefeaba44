package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"kvmount.dev/kvmount/internal/localcluster"
	"kvmount.dev/kvmount/internal/localenv"
)

var spcpsGVR = schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasspodstatuses"}

// TestSeedUserAssignedIdentity is the driver's end-to-end test with the
// seed's user-assigned identity manifests, applied unchanged but for their
// placeholders: the driver registers with kubelet; the scheduled pod's
// volume holds the files with their modes; the status object and the synced
// Secret exist; a new version is picked up by rotation; restarting the
// driver leaves the mount alone and republish works after it; deleting the
// pod unmounts the tmpfs and garbage-collects the status object and the
// Secret. No secret value reaches the driver's or provider's logs.
func TestSeedUserAssignedIdentity(t *testing.T) {
	env, cs := startEnv(t, 2)
	ctx := context.Background()
	const v1, v2, v3 = "CANARY-value-one-7c1e", "CANARY-value-two-7c1e", "CANARY-value-three-7c1e"
	setupSeedVault(t, env, v1)
	if err := env.Cluster.Apply(ctx, manifest(t, "pod-user-msi.yaml", nil)); err != nil {
		t.Fatal(err)
	}
	pod := scheduledPod(t, cs, "default", "busybox-secrets-store-inline-user-msi")
	dir := volumeDir(env, pod, "secrets-store01-inline")
	file := func(name string) (string, os.FileMode) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		fi, err2 := os.Stat(filepath.Join(dir, name))
		if err != nil || err2 != nil {
			return "", 0
		}
		return string(b), fi.Mode().Perm()
	}
	waitFor(t, 90*time.Second, "secret1 in the pod's volume", func() (bool, string) {
		got, _ := file("secret1")
		return got == v1, strings.Join(events(cs, "default", pod.Name), " | ")
	})
	waitContainerFile(t, env, pod.Name, "/mnt/secrets-store/secret1", v1)
	if got, mode := file("key1"); !strings.HasPrefix(got, "-----BEGIN PUBLIC KEY-----") || mode != 0o644 {
		t.Errorf("key1: mode %o, content %.30q", mode, got)
	}
	if _, mode := file("secret1"); mode != 0o644 {
		t.Errorf("secret1 mode %o, want 0644", mode)
	}
	if mounts, _ := localcluster.MountsUnder(dir); len(mounts) != 1 {
		t.Errorf("volume dir %s is not a mount point: %v", dir, mounts)
	}

	dyn := dynamic.NewForConfigOrDie(restConfig(t, env))
	statusName := pod.Name + "-default-azure-kvname-user-msi"
	waitFor(t, 30*time.Second, "the SecretProviderClassPodStatus", func() (bool, string) {
		st, err := dyn.Resource(spcpsGVR).Namespace("default").Get(ctx, statusName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		objs, _, _ := unstructuredSlice(st.Object, "status", "objects")
		owners := st.GetOwnerReferences()
		return len(objs) == 2 && st.GetLabels()["internal.secrets-store.csi.k8s.io/node-name"] == pod.Spec.NodeName &&
			len(owners) == 1 && owners[0].UID == pod.UID, "incomplete"
	})
	secretValue := func() string {
		s, err := cs.CoreV1().Secrets("default").Get(ctx, "synced-secret1", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return string(s.Data["password"])
	}
	waitFor(t, 30*time.Second, "the synced Secret", func() (bool, string) { return secretValue() == v1, secretValue() })

	azsim(t, env, "keyvault secret set", map[string]any{"vaultName": "kvmount-e2e", "name": "secret1", "value": v2})
	waitFor(t, 60*time.Second, "rotation to the new version", func() (bool, string) {
		got, _ := file("secret1")
		return got == v2 && secretValue() == v2, got
	})
	waitContainerFile(t, env, pod.Name, "/mnt/secrets-store/secret1", v2)
	waitFor(t, 10*time.Second, "the rotation event", func() (bool, string) {
		ev := strings.Join(events(cs, "default", pod.Name), " | ")
		return strings.Contains(ev, "SecretRotationComplete"), ev
	})

	node := nodeIndex(env, pod.Spec.NodeName)
	if err := env.RestartDriver(ctx, node); err != nil {
		t.Fatal(err)
	}
	if got, _ := file("secret1"); got != v2 {
		t.Fatalf("restarting the driver disturbed the mount: %q", got)
	}
	azsim(t, env, "keyvault secret set", map[string]any{"vaultName": "kvmount-e2e", "name": "secret1", "value": v3})
	waitFor(t, 60*time.Second, "republish after the driver's restart", func() (bool, string) {
		got, _ := file("secret1")
		return got == v3, got
	})

	if err := cs.CoreV1().Pods("default").Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "the pod's deletion, unmount and garbage collection", func() (bool, string) {
		_, perr := cs.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		mounts, _ := localcluster.MountsUnder(dir)
		_, serr := dyn.Resource(spcpsGVR).Namespace("default").Get(ctx, statusName, metav1.GetOptions{})
		_, kerr := cs.CoreV1().Secrets("default").Get(ctx, "synced-secret1", metav1.GetOptions{})
		return apierrors.IsNotFound(perr) && len(mounts) == 0 && apierrors.IsNotFound(serr) && apierrors.IsNotFound(kerr),
			"pod " + errText(perr) + ", mounts " + strings.Join(mounts, ",") + ", status " + errText(serr) + ", secret " + errText(kerr)
	})
	assertNoCanaryInLogs(t, env, v1, v2, v3)
	all, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
	if err != nil || len(all.Items) == 0 {
		t.Fatalf("no events to check: %v", err)
	}
	for _, e := range all.Items {
		for _, c := range []string{v1, v2, v3} {
			if strings.Contains(e.Message, c) {
				t.Errorf("event %s (%s) holds a secret value", e.Name, e.Reason)
			}
		}
	}
}

// TestFailedMountExplained: a class naming an object that does not exist
// gives the pod a FailedMount event with the provider's explanation, and
// leaves no mount behind.
func TestFailedMountExplained(t *testing.T) {
	env, cs := startEnv(t, 1)
	ctx := context.Background()
	azsim(t, env, "keyvault create", map[string]any{"name": "kvmount-e2e", "resourceGroup": localenv.ResourceGroup})
	// key1 exists, secret1 does not: objects are fetched in parallel, and
	// with both missing either could be the one reported.
	azsim(t, env, "keyvault key create", map[string]any{"vaultName": "kvmount-e2e", "name": "key1", "kty": "RSA", "size": 2048})
	aks := azsim(t, env, "aks show", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": localenv.ClusterName})
	addon := aks["addonProfiles"].(map[string]any)["azureKeyvaultSecretsProvider"].(map[string]any)["identity"].(map[string]any)["clientId"].(string)
	azsim(t, env, "keyvault set-policy", map[string]any{"name": "kvmount-e2e", "spn": addon, "secretPermissions": []string{"get"}, "keyPermissions": []string{"get"}})
	fill := map[string]string{"<client-id>": addon, "<key-vault-name>": "kvmount-e2e", "<tenant-id>": env.TenantID}
	for _, m := range []string{"spc-user-msi.yaml", "pod-user-msi.yaml"} {
		if err := env.Cluster.Apply(ctx, manifest(t, m, fill)); err != nil {
			t.Fatal(err)
		}
	}
	pod := scheduledPod(t, cs, "default", "busybox-secrets-store-inline-user-msi")
	waitFor(t, 90*time.Second, "a FailedMount event naming the missing secret", func() (bool, string) {
		ev := strings.Join(events(cs, "default", pod.Name), " | ")
		return strings.Contains(ev, `secret "secret1" does not exist in key vault "kvmount-e2e"`), ev
	})
	if mounts, _ := localcluster.MountsUnder(volumeDir(env, pod, "secrets-store01-inline")); len(mounts) != 0 {
		t.Errorf("a failed first mount left %v mounted", mounts)
	}
}

func nodeIndex(env *localenv.Env, name string) int {
	for i, n := range env.Nodes {
		if n.Name == name {
			return i
		}
	}
	return -1
}

func errText(err error) string {
	if err == nil {
		return "present"
	}
	if apierrors.IsNotFound(err) {
		return "gone"
	}
	return err.Error()
}

func assertNoCanaryInLogs(t *testing.T, env *localenv.Env, canaries ...string) {
	t.Helper()
	checked := 0
	for _, l := range env.LogFiles() {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		checked++
		for _, c := range canaries {
			if strings.Contains(string(b), c) {
				t.Errorf("secret value found in %s", l)
			}
		}
	}
	if checked < 3 {
		t.Errorf("only %d driver/provider/azsim logs found: the canary check proves little", checked)
	}
}
