package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"kvmount.dev/kvmount/internal/localenv"
)

// stormClass makes vault kvmount-storm with ten secrets readable by the
// AKS add-on identity and a class "storm" mounting all ten.
func stormClass(t testing.TB, env *localenv.Env) {
	t.Helper()
	azsim(t, env, "keyvault create", map[string]any{"name": "kvmount-storm", "resourceGroup": localenv.ResourceGroup})
	var objects strings.Builder
	for i := range 10 {
		azsim(t, env, "keyvault secret set", map[string]any{"vaultName": "kvmount-storm", "name": fmt.Sprintf("s%d", i), "value": fmt.Sprintf("value-%d", i)})
		fmt.Fprintf(&objects, "        - |\n          objectName: s%d\n          objectType: secret\n", i)
	}
	aks := azsim(t, env, "aks show", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": localenv.ClusterName})
	addon := aks["addonProfiles"].(map[string]any)["azureKeyvaultSecretsProvider"].(map[string]any)["identity"].(map[string]any)["clientId"].(string)
	azsim(t, env, "keyvault set-policy", map[string]any{"name": "kvmount-storm", "spn": addon, "secretPermissions": []string{"get"}})
	class := fmt.Sprintf(`apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: storm
spec:
  provider: azure
  parameters:
    useVMManagedIdentity: "true"
    userAssignedIdentityID: %s
    keyvaultName: kvmount-storm
    tenantId: %s
    objects: |
      array:
%s`, addon, env.TenantID, objects.String())
	if err := env.Cluster.Apply(context.Background(), []byte(class)); err != nil {
		t.Fatal(err)
	}
}

// storm creates n pods of class "storm" on node 0, ten at a time as a
// controller would, and returns each pod's time from its creation to its
// last file, and the time from the first creation to the last pod's files.
func storm(t testing.TB, env *localenv.Env, cs kubernetes.Interface, n int) ([]time.Duration, time.Duration) {
	t.Helper()
	ctx := context.Background()
	node := env.Nodes[0].Name
	created := make([]time.Time, n)
	uids := make([]string, n)
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			p := podWithClass(fmt.Sprintf("storm-%03d", i), "storm", "", "")
			p.Spec.NodeName = node
			created[i] = time.Now()
			got, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			uids[i] = string(got.UID)
		})
	}
	wg.Wait()
	root := env.Cluster.Nodes[0].RootDir
	took := make([]time.Duration, n)
	deadline := time.Now().Add(5 * time.Minute)
	for left := n; left > 0; {
		for i := range n {
			if took[i] != 0 {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, "pods", uids[i], "volumes", "kubernetes.io~csi", "secrets-store01-inline", "mount", "s9")); err == nil {
				took[i] = time.Since(created[i])
				left--
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d pods without files after 5 minutes", left, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return took, time.Since(start)
}

// driverRequests counts the drivers' API requests since the cluster
// started, from the API server's own audit log.
func driverRequests(t testing.TB, env *localenv.Env) map[string]int {
	t.Helper()
	counts, err := env.Cluster.AuditCounts()
	if err != nil {
		t.Fatal(err)
	}
	return counts
}

// TestStormRequests: a storm of 30 first mounts costs the API server one
// write per pod (its status object) and no read of the class per pod (the
// class comes from one list and watch); with nothing changed, rotation
// polls afterwards cost no write at all.
func TestStormRequests(t *testing.T) {
	env, cs := startEnv(t, 1)
	stormClass(t, env)
	before := driverRequests(t, env)
	storm(t, env, cs, 30)
	// The status objects follow the files.
	waitFor(t, 30*time.Second, "30 status objects", func() (bool, string) {
		n := driverRequests(t, env)["create secretproviderclasspodstatuses"] - before["create secretproviderclasspodstatuses"]
		return n >= 30, fmt.Sprint(n)
	})
	after := driverRequests(t, env)
	diff := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			diff[k] = d
		}
	}
	if diff["create secretproviderclasspodstatuses"] != 30 || diff["get secretproviderclasses"] != 0 || len(diff) != 1 {
		t.Errorf("driver API requests during a 30-pod storm: %v; want exactly 30 status creates", diff)
	}
	// client-go's informers stream the initial list in the watch (no list
	// request), or list then watch.
	if reads := before["list secretproviderclasses"] + before["watch secretproviderclasses"]; reads < 1 || reads > 2 || before["get secretproviderclasses"] != 0 {
		t.Errorf("the driver's class cache: %v; want one watch (and at most one list), no get", before)
	}
	// Several rotation epochs (2 s each here) with nothing changed.
	time.Sleep(8 * time.Second)
	polls := driverRequests(t, env)
	for k, v := range polls {
		if verb, _, _ := strings.Cut(k, " "); v != after[k] && !slices.Contains([]string{"get", "list", "watch"}, verb) {
			t.Errorf("unchanged rotation polls wrote to the API server: %s %d → %d", k, after[k], v)
		}
	}
}

// BenchmarkStorm110 is the storm of issue 16: 110 pods (kubelet's default
// limit) on one real kubelet node, one class of ten secrets, user-assigned
// managed identity, Key Vault with 20 ms latency. It reports the time to
// the last pod's files, p50 and p95 per pod, the drivers' API requests per
// pod (from the API server's audit log) and Key Vault GETs. By hand:
//
//	sudo scripts/netns-run.sh go test -run XXX -bench Storm110 -benchtime 1x ./test/e2e
func BenchmarkStorm110(b *testing.B) {
	env, cs := startFakeEnv(b, 1, func(c *localenv.Config) { c.KeyVaultLatency = 20 * time.Millisecond })
	stormClass(b, env)
	for b.Loop() {
		before := driverRequests(b, env)
		took, total := storm(b, env, cs, 110)
		after := driverRequests(b, env)
		reqs := 0
		for k, v := range after {
			reqs += v - before[k]
		}
		slices.Sort(took)
		b.ReportMetric(total.Seconds(), "s-to-all-mounted")
		b.ReportMetric(took[len(took)/2].Seconds(), "p50-s")
		b.ReportMetric(took[len(took)*95/100].Seconds(), "p95-s")
		b.ReportMetric(float64(reqs)/110, "api-requests/pod")
		stats := azsim(b, env, "keyvault stats", map[string]any{"name": "kvmount-storm"})
		b.ReportMetric(stats["gets"].(float64), "kv-gets")
	}
}
