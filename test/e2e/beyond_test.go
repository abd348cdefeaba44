package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"kvmount.dev/kvmount/internal/localcluster"
	"kvmount.dev/kvmount/internal/localenv"
)

// userMIClass is a class for the AKS add-on identity (setupSeedVault's)
// with the given objects block entries.
func userMIClass(t *testing.T, env *localenv.Env, name string, entries ...string) []byte {
	t.Helper()
	aks := azsim(t, env, "aks show", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": localenv.ClusterName})
	addon := aks["addonProfiles"].(map[string]any)["azureKeyvaultSecretsProvider"].(map[string]any)["identity"].(map[string]any)["clientId"].(string)
	y := "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: " + name + "\nspec:\n  provider: azure\n  parameters:\n" +
		"    useVMManagedIdentity: \"true\"\n    userAssignedIdentityID: " + addon + "\n    keyvaultName: kvmount-e2e\n    tenantId: " + env.TenantID + "\n    objects: |\n      array:\n"
	for _, e := range entries {
		y += "        - |\n"
		for _, l := range strings.Split(e, "\n") {
			y += "          " + l + "\n"
		}
	}
	return []byte(y)
}

// TestOptionalObject: an optional object that does not exist yet leaves
// its file out, the pod starts and is told with an Event, the status
// object records it (empty version); once it is created, rotation writes
// its file, which the container reads.
func TestOptionalObject(t *testing.T) {
	env, cs := startEnv(t, 1)
	ctx := context.Background()
	setupSeedVault(t, env, "present")
	if err := env.Cluster.Apply(ctx, userMIClass(t, env, "optional", "objectName: secret1\nobjectType: secret", "objectName: later\nobjectType: secret\noptional: true")); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, podWithClass("optional", "optional", "", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSecretFile(t, env, cs, "optional", "present")
	waitFor(t, 30*time.Second, "the OptionalObjectMissing event", func() (bool, string) {
		ev := strings.Join(events(cs, "default", "optional"), " | ")
		return strings.Contains(ev, "OptionalObjectMissing: optional object secret/later is not mounted: it does not exist"), ev
	})
	dyn := dynamic.NewForConfigOrDie(restConfig(t, env))
	waitFor(t, 30*time.Second, "the status object's record of the missing object", func() (bool, string) {
		st, err := dyn.Resource(spcpsGVR).Namespace("default").Get(ctx, "optional-default-optional", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		objs, _, _ := unstructuredSlice(st.Object, "status", "objects")
		for _, o := range objs {
			if m := o.(map[string]any); m["id"] == "secret/later" && (m["version"] == nil || m["version"] == "") {
				return true, ""
			}
		}
		return false, "no secret/later with an empty version"
	})
	azsim(t, env, "keyvault secret set", map[string]any{"vaultName": "kvmount-e2e", "name": "later", "value": "appeared"})
	waitContainerFile(t, env, "optional", "/mnt/secrets-store/later", "appeared")
}

// TestSeveralVaults: one class mounts objects of two vaults.
func TestSeveralVaults(t *testing.T) {
	env, cs := startEnv(t, 1)
	ctx := context.Background()
	addon := setupSeedVault(t, env, "from-e2e")
	vaultWithSecret1(t, env, "kvmount-e2e2", "from-e2e2")
	azsim(t, env, "keyvault set-policy", map[string]any{"name": "kvmount-e2e2", "spn": addon, "secretPermissions": []string{"get"}})
	if err := env.Cluster.Apply(ctx, userMIClass(t, env, "two-vaults", "objectName: secret1\nobjectType: secret",
		"objectName: secret1\nobjectType: secret\nkeyvaultName: kvmount-e2e2\nobjectAlias: secret1-from-e2e2")); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, podWithClass("two-vaults", "two-vaults", "", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSecretFile(t, env, cs, "two-vaults", "from-e2e")
	waitContainerFile(t, env, "two-vaults", "/mnt/secrets-store/secret1-from-e2e2", "from-e2e2")
}

// TestFSGroup: a container running as a non-root user reads files of mode
// 0400 because the pod's fsGroup owns them (group read added); the same
// container without fsGroup is refused, as the mode says.
func TestFSGroup(t *testing.T) {
	env, cs := startEnv(t, 1)
	if env.Cluster.Runtime() != localcluster.RuntimeContainerd {
		t.Skip("needs real containers")
	}
	ctx := context.Background()
	setupSeedVault(t, env, "for-group-2000")
	if err := env.Cluster.Apply(ctx, userMIClass(t, env, "private", "objectName: secret1\nobjectType: secret\nfilePermission: \"0400\"")); err != nil {
		t.Fatal(err)
	}
	user, group, fsGroup := int64(1000), int64(3000), int64(2000)
	for name, fs := range map[string]*int64{"with-fsgroup": &fsGroup, "without-fsgroup": nil} {
		pod := podWithClass(name, "private", "", "")
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &user, RunAsGroup: &group, FSGroup: fs}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitContainerFile(t, env, "with-fsgroup", "/mnt/secrets-store/secret1", "for-group-2000")
	out, err := env.Cluster.Kubectl(ctx, "exec", "with-fsgroup", "--", "id").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "uid=1000") {
		t.Fatalf("id: %v %s", err, out)
	}
	waitFor(t, 60*time.Second, "the pod without fsGroup refused by the file's mode", func() (bool, string) {
		out, err := env.Cluster.Kubectl(ctx, "exec", "without-fsgroup", "--", "cat", "/mnt/secrets-store/secret1").CombinedOutput()
		return err != nil && strings.Contains(string(out), "Permission denied"), string(out)
	})
}
