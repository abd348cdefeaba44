package syncer_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/syncer"
)

// TestLifecycle: a SecretSync's Secret is created from Key Vault with the
// controller's label and one controller reference, takes a new version,
// is restored when edited or deleted, and goes with the SecretSync; an
// unchanged poll writes nothing (no Secret, no status).
func TestLifecycle(t *testing.T) {
	w := theWorld(t)
	ns := w.namespace("lifecycle")
	w.admin("keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "db-password", Value: "v1"})
	w.class(ns, "app", "objectName: db-password\nobjectType: secret")
	c := w.start("lifecycle-0", func(cfg *syncer.Config) { cfg.PollInterval = 2 * time.Second })
	w.secretSync(ns, "app-db", "app", "", "db-password", "password")
	w.waitSecret(ns, "app-db", "password", "v1")

	s, err := w.kube.CoreV1().Secrets(ns).Get(context.Background(), "app-db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ref := metav1.GetControllerOf(s)
	if _, ok := s.Labels[ssv1.ManagedLabel]; !ok || ref == nil || ref.Kind != "SecretSync" || ref.Name != "app-db" || len(s.OwnerReferences) != 1 {
		t.Fatalf("labels %v, owners %v: want the controller's label and one controller reference to the SecretSync", s.Labels, s.OwnerReferences)
	}
	// The status and the Event follow the Secret's write.
	waitFor(t, 30*time.Second, "the SecretSync's status", func() (bool, string) {
		st, conds := w.status(ns, "app-db"), w.conditions(ns, "app-db")
		return strings.HasPrefix(st.SyncHash, "kvm1:") && st.LastSuccessfulSyncTime != nil && strings.Contains(conds, "SecretCreated=True/CreateSuccessful") &&
			strings.Contains(conds, "SecretUpdated=True/SecretUpToDate"), fmt.Sprintf("%+v: %s", st, conds)
	})
	waitFor(t, 30*time.Second, "the SecretCreated Event", func() (bool, string) {
		ev := w.events(ns, "app-db")
		return strings.Contains(ev, "SecretCreated: created Secret "+ns+"/app-db"), ev
	})

	// Polls with nothing changed write nothing.
	writes, statuses := c.metric("kvmount_secretsync_secret_writes_total", ""), c.metric("kvmount_secretsync_status_writes_total", "")
	polls := c.metric("kvmount_secretsync_syncs_total", "result=unchanged")
	waitFor(t, 30*time.Second, "three unchanged polls", func() (bool, string) {
		n := c.metric("kvmount_secretsync_syncs_total", "result=unchanged") - polls
		return n >= 3, ""
	})
	if c.metric("kvmount_secretsync_secret_writes_total", "") != writes || c.metric("kvmount_secretsync_status_writes_total", "") != statuses {
		t.Errorf("unchanged polls wrote: Secret writes %v → %v, status writes %v → %v", writes, c.metric("kvmount_secretsync_secret_writes_total", ""),
			statuses, c.metric("kvmount_secretsync_status_writes_total", ""))
	}

	// A new version reaches the Secret within a poll (the provider's
	// cache serves a poll only within its epoch).
	w.admin("keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "db-password", Value: "v2"})
	w.clock.advance(2 * time.Minute)
	w.waitSecret(ns, "app-db", "password", "v2")

	// Drift: an edit and a deletion are repaired.
	s, _ = w.kube.CoreV1().Secrets(ns).Get(context.Background(), "app-db", metav1.GetOptions{})
	s.Data["password"] = []byte("tampered")
	if _, err := w.kube.CoreV1().Secrets(ns).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitSecret(ns, "app-db", "password", "v2")
	// The Event is written after the Secret, and may trail it.
	waitFor(t, 30*time.Second, "the Event for the repaired edit", func() (bool, string) {
		ev := w.events(ns, "app-db")
		return strings.Contains(ev, "SecretRestored: Secret "+ns+"/app-db was changed outside the controller (data password)"), ev
	})
	if err := w.kube.CoreV1().Secrets(ns).Delete(context.Background(), "app-db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitSecret(ns, "app-db", "password", "v2")

	// Deleted with its SecretSync (the garbage collector).
	w.deleteSecretSync(ns, "app-db")
	waitFor(t, 60*time.Second, "the Secret garbage-collected", func() (bool, string) {
		_, err := w.kube.CoreV1().Secrets(ns).Get(context.Background(), "app-db", metav1.GetOptions{})
		return apierrors.IsNotFound(err), errString(err)
	})
	if n := c.metric("kvmount_secretsync_secret_writes_total", ""); n > writes+3 {
		t.Errorf("%v Secret writes for a create, a rotation and two repairs", n)
	}
}

// TestRefusals: each SecretSync that cannot work says why in its
// condition and an Event, naming the object and the fix; a Secret of the
// same name that is not the controller's is left exactly as it was; a
// SecretSync of another controller is not touched.
func TestRefusals(t *testing.T) {
	w := theWorld(t)
	ns := w.namespace("refusals")
	w.admin("keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "ref-s", Value: "v"})
	w.class(ns, "ok", "objectName: ref-s\nobjectType: secret")
	w.apply(`apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: podid, namespace: ` + ns + `}
spec:
  provider: azure
  parameters: {usePodIdentity: "true", keyvaultName: kv1, tenantId: t, objects: "array: []"}`)
	if _, err := w.kube.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "theirs", Namespace: ns},
		StringData: map[string]string{"k": "their value"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.start("refusals-0", nil)
	w.secretSync(ns, "no-class", "missing", "", "ref-s", "k")
	w.secretSync(ns, "theirs", "ok", "", "ref-s", "k")
	w.secretSync(ns, "no-file", "ok", "", "not-an-object", "k")
	w.secretSync(ns, "pod-identity", "podid", "", "x", "k")
	w.secretSync(ns, "other-controller", "ok", "  secretSyncControllerName: someone-else\n", "ref-s", "k")
	w.apply(`apiVersion: secret-sync.x-k8s.io/v1alpha1
kind: SecretSync
metadata: {name: no-sa, namespace: ` + ns + `}
spec:
  secretProviderClassName: ok
  serviceAccountName: nobody
  secretObject: {data: [{sourcePath: ref-s, targetKey: k}]}`)
	for name, want := range map[string]string{
		"no-class":     "SecretCreated=False/SecretProviderClassMisconfigured: SecretProviderClass missing not found in namespace " + ns + ": create it there",
		"theirs":       "SecretCreated=False/ControllerPatchError: Secret " + ns + "/theirs exists and is not this SecretSync's",
		"no-file":      "SecretCreated=False/RemoteSecretStoreFetchFailed: the provider returned no file not-an-object for SecretProviderClass " + ns + "/ok (it returned ref-s)",
		"pod-identity": "SecretCreated=False/SecretProviderClassMisconfigured: SecretProviderClass " + ns + "/podid: usePodIdentity cannot serve a SecretSync",
		"no-sa":        "SecretCreated=False/ControllerSyncError: service account nobody not found in namespace " + ns,
	} {
		waitFor(t, 30*time.Second, name+"'s condition", func() (bool, string) {
			got := w.conditions(ns, name)
			return strings.Contains(got, want), got
		})
		reason := strings.SplitN(strings.SplitN(want, "/", 2)[1], ":", 2)[0]
		waitFor(t, 10*time.Second, name+"'s Event", func() (bool, string) {
			ev := w.events(ns, name)
			return strings.Contains(ev, reason+": "), ev
		})
	}
	if got, _ := w.secret(ns, "theirs", "k"); got != "their value" {
		t.Errorf("the foreign Secret was changed: %q", got)
	}
	s, _ := w.kube.CoreV1().Secrets(ns).Get(context.Background(), "theirs", metav1.GetOptions{})
	if len(s.OwnerReferences) != 0 || s.Labels[ssv1.ManagedLabel] != "" {
		t.Errorf("the foreign Secret was adopted: owners %v, labels %v", s.OwnerReferences, s.Labels)
	}
	if st := w.status(ns, "other-controller"); len(st.Conditions) != 0 {
		t.Errorf("another controller's SecretSync was synced: %+v", st)
	}
	if _, err := w.secret(ns, "other-controller", "k"); !apierrors.IsNotFound(err) {
		t.Errorf("another controller's SecretSync got a Secret: %v", err)
	}
}

// TestSharedCalls: SecretSyncs of one class and service account that
// arrive together are served by far fewer provider calls than SecretSyncs, and
// Key Vault is read once per object, not once per SecretSync; a
// SecretSync created later still reads afresh (it never gets an older
// value than Key Vault has).
func TestSharedCalls(t *testing.T) {
	w := theWorld(t)
	ns := w.namespace("shared")
	for i := range 5 {
		w.admin("keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "sh-" + string(rune('a'+i)), Value: "v1"})
	}
	w.class(ns, "five", "objectName: sh-a\nobjectType: secret", "objectName: sh-b\nobjectType: secret", "objectName: sh-c\nobjectType: secret",
		"objectName: sh-d\nobjectType: secret", "objectName: sh-e\nobjectType: secret")
	var all strings.Builder
	for i := range 40 {
		obj := "sh-" + string(rune('a'+i%5))
		all.WriteString("---\n")
		all.WriteString(strings.ReplaceAll(strings.ReplaceAll(`apiVersion: secret-sync.x-k8s.io/v1alpha1
kind: SecretSync
metadata: {name: NAME, namespace: NS}
spec:
  secretProviderClassName: five
  serviceAccountName: syncer
  secretObject: {data: [{sourcePath: OBJ, targetKey: value}]}
`, "NAME", "s-"+string(rune('a'+i/10))+string(rune('a'+i%10))), "OBJ", obj))
	}
	// The 40 arrive together: applied before the controller starts, they
	// are in its first list (applied while it runs, a loaded machine spreads
	// them over several batches, and the count would measure the machine).
	w.apply(strings.ReplaceAll(all.String(), "NS", ns))
	w.sim.KeyVault().ResetStats()
	c := w.start("shared-0", nil)
	waitFor(t, 60*time.Second, "40 Secrets", func() (bool, string) {
		n := c.metric("kvmount_secretsync_syncs_total", "result=created")
		return n == 40, ""
	})
	calls := c.metric("kvmount_secretsync_provider_calls_total", "")
	gets := w.sim.KeyVault().Stats("kv1").Gets
	t.Logf("40 SecretSyncs: %v provider calls, %d Key Vault reads", calls, gets)
	if calls > 10 || gets > uint64(5*calls) {
		t.Errorf("40 SecretSyncs of one class cost %v provider calls and %d Key Vault reads; want at most 10 calls of 5 reads", calls, gets)
	}
	w.admin("keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "sh-a", Value: "v2"})
	w.secretSync(ns, "late", "five", "", "sh-a", "value")
	w.waitSecret(ns, "late", "value", "v2")
}

// TestLeaderFailover: two replicas share a Lease; only the leader writes,
// the standby takes over when the leader stops, and the takeover writes
// nothing that was already up to date.
func TestLeaderFailover(t *testing.T) {
	w := theWorld(t)
	ns := w.namespace("failover")
	w.admin("keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "fo-s", Value: "v1"})
	w.class(ns, "fo", "objectName: fo-s\nobjectType: secret")
	elect := func(cfg *syncer.Config) {
		cfg.LeaderElect, cfg.LeaseName = true, "failover-test"
		cfg.Leases = syncer.LeaseTimes{Duration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond}
	}
	a := w.start("replica-a", elect)
	<-a.Active()
	b := w.start("replica-b", elect)
	w.secretSync(ns, "fo", "fo", "", "fo-s", "k")
	w.waitSecret(ns, "fo", "k", "v1")
	if n := b.metric("kvmount_secretsync_syncs_total", ""); n != 0 {
		t.Fatalf("the standby synced %v times while the leader led", n)
	}
	a.stop()
	select {
	case <-b.Active():
	case <-time.After(30 * time.Second):
		t.Fatal("the standby did not take over")
	}
	waitFor(t, 30*time.Second, "the new leader's first sync", func() (bool, string) {
		return b.metric("kvmount_secretsync_syncs_total", "") > 0, ""
	})
	if n := b.metric("kvmount_secretsync_secret_writes_total", ""); n != 0 {
		t.Errorf("the new leader wrote %v Secrets that were up to date (events: %s)", n, w.events(ns, "fo"))
	}
	w.admin("keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "fo-s", Value: "v2"})
	w.apply(`apiVersion: secret-sync.x-k8s.io/v1alpha1
kind: SecretSync
metadata: {name: fo, namespace: ` + ns + `}
spec:
  secretProviderClassName: fo
  serviceAccountName: syncer
  forceSynchronization: now
  secretObject: {type: Opaque, data: [{sourcePath: fo-s, targetKey: k}]}`)
	w.waitSecret(ns, "fo", "k", "v2")
}

func errString(err error) string {
	if err == nil {
		return "present"
	}
	return err.Error()
}

// TestStateBounded: what the controller keeps per SecretSync goes with the
// SecretSync.
func TestStateBounded(t *testing.T) {
	w := theWorld(t)
	ns := w.namespace("bounded")
	w.admin("keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "bd-s", Value: "v"})
	w.class(ns, "bd", "objectName: bd-s\nobjectType: secret")
	c := w.start("bounded-0", nil)
	for i := range 20 {
		w.secretSync(ns, "bd-"+string(rune('a'+i)), "bd", "", "bd-s", "k")
	}
	waitFor(t, time.Minute, "20 Secrets", func() (bool, string) {
		return c.metric("kvmount_secretsync_syncs_total", "result=created") >= 20, ""
	})
	// Other tests' SecretSyncs are in the same cluster: count this one's.
	with := c.Tracked()
	for i := range 20 {
		w.deleteSecretSync(ns, "bd-"+string(rune('a'+i)))
	}
	waitFor(t, 30*time.Second, "the 20 SecretSyncs' state gone", func() (bool, string) {
		n := c.Tracked()
		return n == with-20, fmt.Sprint(n)
	})
	// One token per service account (one per test namespace) and audience.
	if n := c.CachedTokens(); n > w.seq {
		t.Errorf("%d tokens cached for %d service accounts and one audience", n, w.seq)
	}
}
