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
	aks := azsim(t, env, "aks show", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": localenv.ClusterName})
	addon := aks["addonProfiles"].(map[string]any)["azureKeyvaultSecretsProvider"].(map[string]any)["identity"].(map[string]any)["clientId"].(string)
	stormVault(t, env, addon, "    useVMManagedIdentity: \"true\"\n    userAssignedIdentityID: "+addon)
}

// stormWorkloadIdentity is stormClass with a workload identity federated
// with the pods' service account (default/default): every pod's first
// mount exchanges its own service-account token.
func stormWorkloadIdentity(t testing.TB, env *localenv.Env) {
	t.Helper()
	id := azsim(t, env, "identity create", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": "storm-wi"})
	azsim(t, env, "identity federated-credential create", map[string]any{"resourceGroup": localenv.ResourceGroup, "identityName": "storm-wi", "name": "default",
		"issuer": env.Cluster.Server, "subject": "system:serviceaccount:default:default"})
	stormVault(t, env, id["clientId"].(string), "    clientID: "+id["clientId"].(string))
}

// stormVault makes vault kvmount-storm with ten secrets that spn may read,
// and class "storm" with the identity parameters given.
func stormVault(t testing.TB, env *localenv.Env, spn, identity string) {
	t.Helper()
	azsim(t, env, "keyvault create", map[string]any{"name": "kvmount-storm", "resourceGroup": localenv.ResourceGroup})
	var objects strings.Builder
	for i := range 10 {
		azsim(t, env, "keyvault secret set", map[string]any{"vaultName": "kvmount-storm", "name": fmt.Sprintf("s%d", i), "value": fmt.Sprintf("value-%d", i)})
		fmt.Fprintf(&objects, "        - |\n          objectName: s%d\n          objectType: secret\n", i)
	}
	azsim(t, env, "keyvault set-policy", map[string]any{"name": "kvmount-storm", "spn": spn, "secretPermissions": []string{"get"}})
	class := fmt.Sprintf(`apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: storm
spec:
  provider: azure
  parameters:
%s
    keyvaultName: kvmount-storm
    tenantId: %s
    objects: |
      array:
%s`, identity, env.TenantID, objects.String())
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
// limit) on one real kubelet node, one class of ten secrets, Key Vault with
// 20 ms latency, with the user-assigned managed identity of the seed and
// with a workload identity (whose first mounts each exchange their pod's
// own service-account token: the price of revocation). It reports the time
// to the last pod's files, p50 and p95 per pod, and, once every status
// object is written, the driver's API requests per pod and kubelet's
// TokenRequests per pod (from the API server's audit log), identity token
// requests per pod and Key Vault GETs (from azsim). By hand:
//
//	sudo scripts/netns-run.sh go test -run XXX -bench Storm110 -benchtime 1x ./test/e2e
func BenchmarkStorm110(b *testing.B) {
	for _, mode := range []struct {
		name  string
		class func(testing.TB, *localenv.Env)
		token string // the azsim token counter of the mode
	}{{"user-assigned-MI", stormClass, "imds"}, {"workload-identity", stormWorkloadIdentity, "entra"}} {
		b.Run(mode.name, func(b *testing.B) {
			env, cs := startFakeEnv(b, 1, func(c *localenv.Config) { c.KeyVaultLatency = 20 * time.Millisecond })
			mode.class(b, env)
			for b.Loop() {
				stormFigures(b, env, cs, 110, mode.token)
			}
		})
	}
}

// stormFigures runs one storm of n pods and reports its figures.
func stormFigures(b *testing.B, env *localenv.Env, cs kubernetes.Interface, n int, tokenCounter string) {
	before := driverRequests(b, env)
	kubeletBefore, _ := env.Cluster.KubeletTokenRequests()
	tokensBefore := azsim(b, env, "token stats", nil)
	took, total := storm(b, env, cs, n)
	// The figures are read once every status object is written, not when
	// the last file appears (a status write may still be on its way).
	var after map[string]int
	waitFor(b, time.Minute, fmt.Sprintf("%d status objects", n), func() (bool, string) {
		after = driverRequests(b, env)
		c := after["create secretproviderclasspodstatuses"] - before["create secretproviderclasspodstatuses"]
		return c >= n, fmt.Sprint(c)
	})
	reqs := 0
	for k, v := range after {
		reqs += v - before[k]
	}
	kubeletAfter, _ := env.Cluster.KubeletTokenRequests()
	tokensAfter := azsim(b, env, "token stats", nil)
	slices.Sort(took)
	b.ReportMetric(total.Seconds(), "s-to-all-mounted")
	b.ReportMetric(took[len(took)/2].Seconds(), "p50-s")
	b.ReportMetric(took[len(took)*95/100].Seconds(), "p95-s")
	b.ReportMetric(float64(reqs)/float64(n), "api-requests/pod")
	b.ReportMetric(float64(kubeletAfter-kubeletBefore)/float64(n), "kubelet-token-requests/pod")
	b.ReportMetric((tokensAfter[tokenCounter].(float64)-tokensBefore[tokenCounter].(float64))/float64(n), tokenCounter+"-token-requests/pod")
	stats := azsim(b, env, "keyvault stats", map[string]any{"name": "kvmount-storm"})
	b.ReportMetric(stats["gets"].(float64), "kv-gets")
}
