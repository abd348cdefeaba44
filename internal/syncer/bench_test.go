package syncer_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/localcluster"
)

// BenchmarkSecretSync1000 is the benchmark: 1,000 SecretSyncs over
// 10 service accounts (each its own workload identity, so 10 principals)
// and 10 objects, synced by the controller binary as its own process (so
// that its memory is its own) with kvmount's provider. It reports the time
// from the first SecretSync to the last Secret, Key Vault reads on creation
// (every first sync reads afresh: SecretSyncs share a read only when it
// started after they appeared) and over a poll of all (the goal is one per
// unique (principal, object): 100), provider calls, Secret and
// status writes on creation and over an unchanged poll (goal: one per
// Secret, then none), and the controller's resident memory. By hand:
//
//	sudo scripts/netns-run.sh go test -run XXX -bench SecretSync1000 -benchtime 1x ./internal/syncer
func BenchmarkSecretSync1000(b *testing.B) {
	w := theWorld(b)
	ns := w.namespace("bench")
	const sas, objects, syncs = 10, 10, 1000
	for o := range objects {
		w.admin("keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: fmt.Sprintf("bench-%d", o), Value: fmt.Sprintf("v-%d", o)})
	}
	for s := range sas {
		benchIdentity(w, ns, s, objects)
	}
	ctrl := startControllerProcess(b, w, 20*time.Second)
	for b.Loop() {
		w.sim.KeyVault().ResetStats()
		start := time.Now()
		createSyncs(b, w, ns, syncs, sas, objects)
		waitFor(b, 5*time.Minute, "1,000 Secrets", func() (bool, string) {
			n := ctrl.metric(b, "kvmount_secretsync_syncs_total", `result="created"`)
			return n >= syncs, fmt.Sprint(n)
		})
		took := time.Since(start)
		gets := w.sim.KeyVault().Stats("kv1").Gets
		calls := ctrl.metric(b, "kvmount_secretsync_provider_calls_total", "")
		writes := ctrl.metric(b, "kvmount_secretsync_secret_writes_total", "")
		statuses := ctrl.metric(b, "kvmount_secretsync_status_writes_total", "")
		rss := rssMiB(ctrl.cmd.Process.Pid)
		// One poll of every SecretSync (the interval, jittered, and a
		// margin), in a new epoch of the provider's cache (whose period is
		// the poll interval in the chart).
		w.clock.advance(2 * time.Minute)
		w.sim.KeyVault().ResetStats()
		unchanged := ctrl.metric(b, "kvmount_secretsync_syncs_total", `result="unchanged"`)
		waitFor(b, 2*time.Minute, "a poll of every SecretSync", func() (bool, string) {
			n := ctrl.metric(b, "kvmount_secretsync_syncs_total", `result="unchanged"`) - unchanged
			return n >= syncs, fmt.Sprint(n)
		})
		b.ReportMetric(float64(w.sim.KeyVault().Stats("kv1").Gets), "kv-reads-per-poll")
		b.ReportMetric(took.Seconds(), "s-to-all-synced")
		b.ReportMetric(float64(gets), "kv-reads")
		b.ReportMetric(calls, "provider-calls")
		b.ReportMetric(writes/syncs, "secret-writes/secret")
		b.ReportMetric(statuses/syncs, "status-writes/secret")
		b.ReportMetric(ctrl.metric(b, "kvmount_secretsync_secret_writes_total", "")-writes, "secret-writes-unchanged-poll")
		b.ReportMetric(ctrl.metric(b, "kvmount_secretsync_status_writes_total", "")-statuses, "status-writes-unchanged-poll")
		b.ReportMetric(rss, "controller-rss-MiB")
		b.ReportMetric(rssMiB(ctrl.cmd.Process.Pid), "controller-rss-after-poll-MiB")
	}
}

// benchIdentity makes workload identity bench-<s>, federated with service
// account ns/sa-<s>, that may read the objects, and class class-<s> of
// all objects as it.
func benchIdentity(w *world, ns string, s, objects int) {
	w.t.Helper()
	name := fmt.Sprintf("bench-%d", s)
	id := w.admin("identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: name})
	w.admin("identity federated-credential create", arm.FederatedArgs{ResourceGroup: "rg", IdentityName: name, Name: ns + "-" + name,
		Issuer: w.cluster.Server, Subject: fmt.Sprintf("system:serviceaccount:%s:sa-%d", ns, s)})
	w.admin("keyvault set-policy", map[string]any{"name": "kv1", "spn": id["clientId"], "secretPermissions": []string{"get"}})
	if _, err := w.kube.CoreV1().ServiceAccounts(ns).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sa-%d", s)}}, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
	var objs []string
	for o := range objects {
		objs = append(objs, fmt.Sprintf("objectName: bench-%d\nobjectType: secret", o))
	}
	saved := w.clientID
	w.clientID = id["clientId"].(string)
	w.class(ns, fmt.Sprintf("class-%d", s), objs...)
	w.clientID = saved
}

// createSyncs creates n SecretSyncs, 20 at a time: SecretSync i uses
// service account and class i mod sas and object (i / sas) mod objects.
func createSyncs(b *testing.B, w *world, ns string, n, sas, objects int) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			s, o := i%sas, (i/sas)%objects
			u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": ssv1.APIVersion, "kind": ssv1.Kind,
				"metadata": map[string]any{"name": fmt.Sprintf("sync-%04d", i), "namespace": ns},
				"spec": map[string]any{"secretProviderClassName": fmt.Sprintf("class-%d", s), "serviceAccountName": fmt.Sprintf("sa-%d", s),
					"secretObject": map[string]any{"data": []any{map[string]any{"sourcePath": fmt.Sprintf("bench-%d", o), "targetKey": "value"}}}}}}
			if _, err := w.dyn.Resource(ssv1.Resource).Namespace(ns).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
}

// process is the controller binary running against the world.
type process struct {
	cmd     *exec.Cmd
	metrics string
}

func startControllerProcess(b *testing.B, w *world, poll time.Duration) *process {
	bin, err := localcluster.FindBinDir()
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(bin, "secrets-sync-controller")
	if _, err := os.Stat(path); err != nil {
		b.Fatalf("%v: run make build", err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(path, "--kubeconfig="+w.cluster.KubeconfigPath, "--provider-volume="+w.provDir, "--token-request-audience=api://AzureADTokenExchange",
		"--rotation-poll-interval="+poll.String(), "--metrics-bind-address="+addr, "--health-probe-bind-address=", "--pod-name=bench-controller",
		"--pod-uid=bench-uid", "--namespace=kube-system", "--kube-api-qps=200", "--kube-api-burst=400")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return &process{cmd: cmd, metrics: "http://" + addr + "/metrics"}
}

// metric sums a metric's series (labels: a substring of the series'
// labels, or "" for all).
func (p *process) metric(b *testing.B, name, labels string) float64 {
	resp, err := http.Get(p.metrics)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		if labels != "" && !strings.Contains(line, labels) {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		total += v
	}
	return total
}

// rssMiB is a process's resident memory.
func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
