package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
	"kvmount.dev/kvmount/internal/localcluster"
	"kvmount.dev/kvmount/internal/localenv"
)

// TestSecretSync: the SecretSync controller and its provider in real
// containers from the chart, with workload identity: a SecretSync's Secret
// appears and a pod reads it through envFrom; a new Key Vault version
// reaches it; an edited Secret is restored; a wrong class or service
// account is explained in the condition and an Event; a foreign Secret of
// the same name is left alone; when the leader's pod goes the other
// replica takes over without writing what is up to date; the chart's
// admission policies refuse what the controller must never do; deleting the
// SecretSync deletes its Secret.
func TestSecretSync(t *testing.T) {
	env, cs := startEnvWith(t, 1, func(c *localenv.Config) { c.SyncController = true })
	ctx := context.Background()
	vaultWithSecret1(t, env, "kvmount-sync", "synced-v1")
	id := azsim(t, env, "identity create", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": "sync-wi"})
	azsim(t, env, "identity federated-credential create", map[string]any{"resourceGroup": localenv.ResourceGroup, "identityName": "sync-wi", "name": "app",
		"issuer": env.Cluster.Server, "subject": "system:serviceaccount:default:app"})
	azsim(t, env, "keyvault set-policy", map[string]any{"name": "kvmount-sync", "spn": id["clientId"], "secretPermissions": []string{"get"}})
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	params := "    clientID: " + id["clientId"].(string) + "\n    keyvaultName: kvmount-sync\n    tenantId: " + env.TenantID
	if err := env.Cluster.Apply(ctx, classYAML("sync-class", params)); err != nil {
		t.Fatal(err)
	}
	theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "theirs"}, StringData: map[string]string{"k": "their value"}}
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, theirs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applySync(t, env, "db-creds", "sync-class", "app")
	waitSyncedKey(t, cs, "db-creds", "password", "synced-v1")

	t.Run("envFrom", func(t *testing.T) { podReadsSecret(t, env, cs) })
	t.Run("rotation", func(t *testing.T) {
		azsim(t, env, "keyvault secret set", map[string]any{"vaultName": "kvmount-sync", "name": "secret1", "value": "synced-v2"})
		waitSyncedKey(t, cs, "db-creds", "password", "synced-v2")
	})
	t.Run("drift repaired", func(t *testing.T) {
		s, err := cs.CoreV1().Secrets("default").Get(ctx, "db-creds", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Data["password"] = []byte("edited by hand")
		if _, err := cs.CoreV1().Secrets("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSyncedKey(t, cs, "db-creds", "password", "synced-v2")
	})
	t.Run("refusals", func(t *testing.T) {
		applySync(t, env, "no-class", "missing-class", "app")
		applySync(t, env, "no-sa", "sync-class", "nobody")
		applySync(t, env, "theirs", "sync-class", "app")
		for name, want := range map[string]string{
			"no-class": "SecretProviderClassMisconfigured: SecretProviderClass missing-class not found in namespace default",
			"no-sa":    "ControllerSyncError: service account nobody not found in namespace default",
			"theirs":   "ControllerPatchError: Secret default/theirs exists and is not this SecretSync's",
		} {
			waitFor(t, time.Minute, name+" explained in its condition and an Event", func() (bool, string) {
				got := syncConditions(env, name) + " || " + strings.Join(events(cs, "default", name), " | ")
				return strings.Count(got, strings.SplitN(want, ":", 2)[0]) >= 2 && strings.Contains(got, strings.SplitN(want, ": ", 2)[1]), got
			})
		}
		if s, _ := cs.CoreV1().Secrets("default").Get(ctx, "theirs", metav1.GetOptions{}); string(s.Data["k"]) != "their value" || len(s.OwnerReferences) != 0 {
			t.Errorf("the foreign Secret was touched: %v %v", s.Data, s.OwnerReferences)
		}
	})
	t.Run("leader failover", func(t *testing.T) { failover(t, env, cs) })
	t.Run("admission policies", func(t *testing.T) { admissionRefusals(t, env) })
	t.Run("garbage collected", func(t *testing.T) {
		dyn := dynamic.NewForConfigOrDie(restConfig(t, env))
		if err := dyn.Resource(ssv1.Resource).Namespace("default").Delete(ctx, "db-creds", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the Secret deleted with its SecretSync", func() (bool, string) {
			_, err := cs.CoreV1().Secrets("default").Get(ctx, "db-creds", metav1.GetOptions{})
			return apierrors.IsNotFound(err), errText(err)
		})
	})
}

// applySync applies SecretSync name (secret1 → password).
func applySync(t *testing.T, env *localenv.Env, name, class, sa string) {
	t.Helper()
	manifest := fmt.Sprintf(`apiVersion: secret-sync.x-k8s.io/v1alpha1
kind: SecretSync
metadata:
  name: %s
  namespace: default
spec:
  serviceAccountName: %s
  secretProviderClassName: %s
  secretObject:
    type: Opaque
    data:
    - sourcePath: secret1
      targetKey: password
`, name, sa, class)
	if err := env.Cluster.Apply(context.Background(), []byte(manifest)); err != nil {
		t.Fatal(err)
	}
}

func waitSyncedKey(t *testing.T, cs kubernetes.Interface, name, key, want string) {
	t.Helper()
	waitFor(t, 90*time.Second, fmt.Sprintf("Secret %s %s = %q", name, key, want), func() (bool, string) {
		s, err := cs.CoreV1().Secrets("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error() + " | " + strings.Join(events(cs, "default", name), " | ")
		}
		return string(s.Data[key]) == want, string(s.Data[key])
	})
}

func syncConditions(env *localenv.Env, name string) string {
	dyn, err := dynamic.NewForConfig(mustRESTConfig(env))
	if err != nil {
		return err.Error()
	}
	u, err := dyn.Resource(ssv1.Resource).Namespace("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var out []string
	for _, c := range conds {
		m := c.(map[string]any)
		out = append(out, fmt.Sprintf("%s=%s %s: %s", m["type"], m["status"], m["reason"], m["message"]))
	}
	return strings.Join(out, " | ")
}

func mustRESTConfig(env *localenv.Env) *rest.Config {
	rc, _ := env.Cluster.RESTConfig()
	return rc
}

// podReadsSecret runs a pod with the Secret as envFrom, as a Deployment
// using a synced Secret does, and reads the variable inside it.
func podReadsSecret(t *testing.T, env *localenv.Env, cs kubernetes.Interface) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "env-reader"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "busybox", Image: "k8s.gcr.io/e2e-test-images/busybox:1.29-1", Command: []string{"/bin/sleep", "10000"},
		EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "db-creds"}}}}}}}}
	if _, err := cs.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "env-reader's password variable", func() (bool, string) {
		out, err := env.Cluster.Kubectl(context.Background(), "exec", "env-reader", "--", "sh", "-c", `echo "$password"`).CombinedOutput()
		return err == nil && strings.TrimSpace(string(out)) == "synced-v1", string(out)
	})
}

// failover deletes the leading replica's pod: the other replica takes the
// Lease, and its first syncs write no Secret that is up to date.
func failover(t *testing.T, env *localenv.Env, cs kubernetes.Interface) {
	ctx := context.Background()
	var lease *coordinationv1.Lease
	waitFor(t, time.Minute, "a leader", func() (bool, string) {
		l, err := cs.CoordinationV1().Leases(localenv.ReleaseNamespace).Get(ctx, "secrets-store-sync-controller", metav1.GetOptions{})
		lease = l
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "", errText(err)
	})
	leader := *lease.Spec.HolderIdentity
	before := secretWrites(t, env)
	if err := cs.CoreV1().Pods(localenv.ReleaseNamespace).Delete(ctx, leader, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "another replica leading", func() (bool, string) {
		l, err := cs.CoordinationV1().Leases(localenv.ReleaseNamespace).Get(ctx, "secrets-store-sync-controller", metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" && *l.Spec.HolderIdentity != leader, errText(err)
	})
	// The new leader syncs every SecretSync afresh: a rotation proves it
	// works; nothing else may be written.
	azsim(t, env, "keyvault secret set", map[string]any{"vaultName": "kvmount-sync", "name": "secret1", "value": "synced-v3"})
	waitSyncedKey(t, cs, "db-creds", "password", "synced-v3")
	if got := secretWrites(t, env) - before; got != 1 {
		t.Errorf("%d Secret writes by the controllers across the failover and one new version, want 1", got)
	}
}

// secretWrites counts the controller's Secret creates and patches that
// succeeded, from the API server's audit log.
func secretWrites(t *testing.T, env *localenv.Env) int {
	t.Helper()
	entries, err := env.Cluster.AuditEntries()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.User == localcluster.SyncControllerUser && e.Resource == "secrets" && e.Subresource == "" && e.Code/100 == 2 &&
			(e.Verb == "create" || e.Verb == "patch" || e.Verb == "update") {
			n++
		}
	}
	return n
}

// admissionRefusals sends, as the controller's service account, what the
// chart's ValidatingAdmissionPolicies must refuse.
func admissionRefusals(t *testing.T, env *localenv.Env) {
	rc := asSyncController(t, env)
	as := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	yes := true
	owner := []metav1.OwnerReference{{APIVersion: ssv1.APIVersion, Kind: ssv1.Kind, Name: "vap-probe", UID: "0e0e0e0e-0000-0000-0000-000000000000", Controller: &yes}}
	sec := func(typ corev1.SecretType, owners []metav1.OwnerReference) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vap-probe", Labels: map[string]string{ssv1.ManagedLabel: ""}, OwnerReferences: owners},
			Type: typ, StringData: map[string]string{"k": "v"}}
	}
	secs := int64(600)
	long := int64(3600)
	tests := []struct {
		name, policy string
		do           func() error
	}{
		{"a service-account token Secret", "kvmount-secrets-sync-create-update", func() error {
			s := sec(corev1.SecretTypeServiceAccountToken, owner)
			s.Annotations = map[string]string{corev1.ServiceAccountNameKey: "default"}
			_, err := as.CoreV1().Secrets("default").Create(ctx, s, metav1.CreateOptions{})
			return err
		}},
		{"a Secret no SecretSync owns", "kvmount-secrets-sync-create-update", func() error {
			_, err := as.CoreV1().Secrets("default").Create(ctx, sec(corev1.SecretTypeOpaque, nil), metav1.CreateOptions{})
			return err
		}},
		{"deleting a Secret", "kvmount-secrets-sync-no-delete", func() error {
			return as.CoreV1().Secrets("default").Delete(ctx, "theirs", metav1.DeleteOptions{})
		}},
		{"a token for another audience", "kvmount-secrets-sync-token", func() error {
			_, err := as.CoreV1().ServiceAccounts("default").CreateToken(ctx, "app", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
				Audiences: []string{"https://kubernetes.default.svc"}, ExpirationSeconds: &secs}}, metav1.CreateOptions{})
			return err
		}},
		{"a token of an hour", "kvmount-secrets-sync-token", func() error {
			_, err := as.CoreV1().ServiceAccounts("default").CreateToken(ctx, "app", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
				Audiences: []string{"api://AzureADTokenExchange"}, ExpirationSeconds: &long}}, metav1.CreateOptions{})
			return err
		}},
	}
	for _, tt := range tests {
		err := tt.do()
		if err == nil || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+tt.policy+"'") {
			t.Errorf("%s: %v; want a refusal by %s", tt.name, err, tt.policy)
		}
	}
	// What the controller does is allowed: a token as it asks for one.
	if _, err := as.CoreV1().ServiceAccounts("default").CreateToken(ctx, "app", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{"api://AzureADTokenExchange"}, ExpirationSeconds: &secs}}, metav1.CreateOptions{}); err != nil {
		t.Errorf("the controller's own token request was refused: %v", err)
	}
}

// asSyncController is the API as the chart's sync controller's service
// account sees it (impersonated, with its groups).
func asSyncController(t *testing.T, env *localenv.Env) *rest.Config {
	t.Helper()
	rc := restConfig(t, env)
	rc.Impersonate = rest.ImpersonationConfig{UserName: localcluster.SyncControllerUser,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}}
	return rc
}
