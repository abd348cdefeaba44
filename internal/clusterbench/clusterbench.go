// Package clusterbench measures what kvmount costs a cluster: it starts a
// local environment of N nodes (kubelets on the fake runtime, each with its
// own driver and provider process), mounts P pods per node with a mix of
// classes, identities and objects, then runs R rotation polls with some
// objects changing, and reports the three shared budgets an operator plans
// with — the API server's requests (from its own audit log), Key Vault's
// reads (from azsim's counters, against the unique (node, principal,
// object) count) and token issuance (Entra ID, IMDS, NMI) — plus each
// node's driver and provider memory and CPU.
package clusterbench

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/localcluster"
	"kvmount.dev/kvmount/internal/localenv"
)

// Config is one run.
type Config struct {
	Nodes, PodsPerNode int
	// Classes are SecretProviderClasses, each of Objects secrets, pods
	// spread over them; Identities are user-assigned identities of the
	// node pool, class c using identity c mod Identities.
	Classes, Identities, Objects int
	// Polls are the rotation polls measured; Changes objects get a new
	// version before each.
	Polls, Changes int
	// PollInterval is the driver's --rotation-poll-interval (default 10s).
	PollInterval time.Duration
	// KeyVaultLatency is added to every Key Vault request.
	KeyVaultLatency time.Duration
	Dir             string               `json:"-"`
	BinDir          string               `json:"-"`
	Logf            func(string, ...any) `json:"-"`
}

// Report is what a run measured.
type Report struct {
	Config Config `json:"config"`
	// Mount phase.
	Pods          int     `json:"pods"`
	AllMountedSec float64 `json:"allMountedSeconds"`
	P50Sec        float64 `json:"p50Seconds"`
	P95Sec        float64 `json:"p95Seconds"`
	MaxSec        float64 `json:"maxSeconds"`
	// MountRequests are the drivers' API requests while mounting, by
	// "verb resource"; per pod in MountRequestsPerPod.
	MountRequests       map[string]int   `json:"mountRequests"`
	MountRequestsPerPod float64          `json:"mountRequestsPerPod"`
	MountKVReads        uint64           `json:"mountKeyVaultReads"`
	MountTokens         azsim.TokenStats `json:"mountTokens"`
	// Poll phase, per poll.
	PollRequests map[string]float64 `json:"pollRequestsPerPoll"`
	PollWrites   float64            `json:"pollWritesPerPoll"`
	PollKVReads  float64            `json:"pollKeyVaultReadsPerPoll"`
	// PollKVReadsTotal were made over PollWindowSec, which spans
	// PollEpochs rotation epochs (begun or partial).
	PollKVReadsTotal uint64           `json:"pollKeyVaultReadsTotal"`
	PollWindowSec    float64          `json:"pollWindowSeconds"`
	PollEpochs       int              `json:"pollEpochs"`
	UniquePairs      int              `json:"uniqueNodePrincipalObjects"`
	PollTokens       azsim.TokenStats `json:"pollTokens"`
	RotationSec      float64          `json:"rotationSeconds"`
	StatusObjects    int              `json:"statusObjects"`
	DriverRSSMiB     []float64        `json:"driverRSSMiB"`
	ProviderRSSMiB   []float64        `json:"providerRSSMiB"`
	DriverCPUPct     []float64        `json:"driverCPUPercentDuringPolls"`
	ProviderCPUPct   []float64        `json:"providerCPUPercentDuringPolls"`
	StartSec         float64          `json:"environmentStartSeconds"`
	TokenDefinitions string           `json:"tokenNote"`
}

func (c *Config) defaults() {
	if c.Nodes < 1 {
		c.Nodes = 1
	}
	if c.PodsPerNode < 1 {
		c.PodsPerNode = 1
	}
	c.Classes, c.Identities, c.Objects = max(c.Classes, 1), max(c.Identities, 1), max(c.Objects, 1)
	c.Identities = min(c.Identities, c.Classes)
	if c.PollInterval == 0 {
		c.PollInterval = 10 * time.Second
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	c.Changes = min(c.Changes, c.Objects)
}

const vault = "bench-kv"

var spcpsGVR = schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasspodstatuses"}

// Run starts the environment, measures, stops it and reports.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg.defaults()
	rep := Report{Config: cfg, TokenDefinitions: "token requests azsim answered: Entra ID token endpoint, IMDS and NMI token paths"}
	start := time.Now()
	env, err := localenv.Start(ctx, localenv.Config{Dir: cfg.Dir, BinDir: cfg.BinDir, Nodes: cfg.Nodes, Runtime: localcluster.RuntimeFake,
		SyncFrequency: min(5*time.Second, cfg.PollInterval/2), RotationPollInterval: cfg.PollInterval, KeyVaultLatency: cfg.KeyVaultLatency, Logf: cfg.Logf})
	if err != nil {
		return rep, err
	}
	defer env.Stop()
	rep.StartSec = time.Since(start).Seconds()
	b := &bench{cfg: cfg, env: env, rep: &rep}
	if err := b.setup(ctx); err != nil {
		return rep, err
	}
	if err := b.mountPhase(ctx); err != nil {
		return rep, err
	}
	return rep, b.pollPhase(ctx)
}

type bench struct {
	cfg  Config
	env  *localenv.Env
	rep  *Report
	kube kubernetes.Interface
	dyn  dynamic.Interface
	// classOf is each pod's class, by pod name.
	classOf map[string]int
	pods    []corev1.Pod
}

func (b *bench) az(ctx context.Context, verb string, args map[string]any) (map[string]any, error) {
	out, err := b.env.Azsim(ctx, verb, args)
	if err != nil {
		return nil, fmt.Errorf("azsim %s: %w", verb, err)
	}
	return out, nil
}

// setup makes the vault, the objects, the identities (assigned to the node
// pool and granted), the classes and the kube clients.
func (b *bench) setup(ctx context.Context) error {
	rc, err := b.env.Cluster.RESTConfig()
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 200, 400
	if b.kube, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	if b.dyn, err = dynamic.NewForConfig(rc); err != nil {
		return err
	}
	if _, err := b.az(ctx, "keyvault create", map[string]any{"name": vault, "resourceGroup": localenv.ResourceGroup}); err != nil {
		return err
	}
	for o := range b.cfg.Objects {
		if _, err := b.az(ctx, "keyvault secret set", map[string]any{"vaultName": vault, "name": objectName(o), "value": "v0-" + strconv.Itoa(o)}); err != nil {
			return err
		}
	}
	nodeRG, vmss, err := b.env.NodePool(ctx)
	if err != nil {
		return err
	}
	var clientIDs []string
	for i := range b.cfg.Identities {
		id, err := b.az(ctx, "identity create", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": "bench-id-" + strconv.Itoa(i)})
		if err != nil {
			return err
		}
		if _, err := b.az(ctx, "vmss identity assign", map[string]any{"resourceGroup": nodeRG, "name": vmss, "identities": []string{id["id"].(string)}}); err != nil {
			return err
		}
		if _, err := b.az(ctx, "keyvault set-policy", map[string]any{"name": vault, "spn": id["clientId"], "secretPermissions": []string{"get"}}); err != nil {
			return err
		}
		clientIDs = append(clientIDs, id["clientId"].(string))
	}
	for c := range b.cfg.Classes {
		if err := b.env.Cluster.Apply(ctx, b.classYAML(c, clientIDs[c%len(clientIDs)])); err != nil {
			return err
		}
	}
	return nil
}

func objectName(o int) string { return "s" + strconv.Itoa(o) }

func (b *bench) classYAML(c int, clientID string) []byte {
	var objs strings.Builder
	for o := range b.cfg.Objects {
		fmt.Fprintf(&objs, "        - |\n          objectName: %s\n          objectType: secret\n", objectName(o))
	}
	return []byte(fmt.Sprintf(`apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: bench-%d, namespace: default}
spec:
  provider: azure
  parameters:
    useVMManagedIdentity: "true"
    userAssignedIdentityID: %s
    keyvaultName: %s
    tenantId: %s
    objects: |
      array:
%s`, c, clientID, vault, b.env.TenantID, objs.String()))
}

// mountPhase creates every pod (pinned to its node, classes round-robin)
// and waits until each has its status object, which the driver writes
// right after the pod's files.
func (b *bench) mountPhase(ctx context.Context) error {
	b.cfg.Logf("mounting %d pods on %d nodes", b.cfg.Nodes*b.cfg.PodsPerNode, b.cfg.Nodes)
	audit0, err := b.env.Cluster.AuditCounts()
	if err != nil {
		return err
	}
	kv0 := b.kvGets(ctx)
	tok0 := b.tokens(ctx)
	b.classOf = map[string]int{}
	created := map[string]time.Time{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	sem := make(chan struct{}, 32)
	for n := range b.cfg.Nodes {
		for j := range b.cfg.PodsPerNode {
			name := fmt.Sprintf("bench-%d-%d", n, j)
			class := (n*b.cfg.PodsPerNode + j) % b.cfg.Classes
			pod := benchPod(name, b.env.Cluster.Nodes[n].Name, class)
			b.classOf[name] = class
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				t := time.Now()
				if _, err := b.kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				mu.Lock()
				created[name] = t
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	select {
	case err := <-errs:
		return fmt.Errorf("create pods: %w", err)
	default:
	}
	first := time.Now()
	for _, t := range created {
		first = minTime(first, t)
	}
	mounted, err := b.waitStatuses(ctx, len(created), 15*time.Minute)
	if err != nil {
		return err
	}
	var took []float64
	last := first
	for name, at := range mounted {
		took = append(took, at.Sub(created[name]).Seconds())
		last = maxTime(last, at)
	}
	sort.Float64s(took)
	r := b.rep
	r.Pods = len(created)
	r.AllMountedSec, r.P50Sec, r.P95Sec, r.MaxSec = last.Sub(first).Seconds(), pct(took, 50), pct(took, 95), took[len(took)-1]
	// The audit log trails the requests a little.
	time.Sleep(2 * time.Second)
	audit1, err := b.env.Cluster.AuditCounts()
	if err != nil {
		return err
	}
	r.MountRequests = diff(audit1, audit0)
	r.MountRequestsPerPod = float64(sum(r.MountRequests)) / float64(r.Pods)
	r.MountKVReads = b.kvGets(ctx) - kv0
	r.MountTokens = subTokens(b.tokens(ctx), tok0)
	return nil
}

func benchPod(name, node string, class int) *corev1.Pod {
	ro := true
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.PodSpec{NodeName: node,
		Containers: []corev1.Container{{Name: "c", Image: "k8s.gcr.io/e2e-test-images/busybox:1.29-1", Command: []string{"/bin/sleep", "10000"},
			VolumeMounts: []corev1.VolumeMount{{Name: "kv", MountPath: "/mnt/secrets-store", ReadOnly: true}}}},
		Volumes: []corev1.Volume{{Name: "kv", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "secrets-store.csi.k8s.io",
			ReadOnly: &ro, VolumeAttributes: map[string]string{"secretProviderClass": "bench-" + strconv.Itoa(class)}}}}}}}
}

// waitStatuses polls the status objects until n pods have one, recording
// when each was first seen.
func (b *bench) waitStatuses(ctx context.Context, n int, timeout time.Duration) (map[string]time.Time, error) {
	seen := map[string]time.Time{}
	deadline := time.Now().Add(timeout)
	for len(seen) < n {
		list, err := b.dyn.Resource(spcpsGVR).Namespace("default").List(ctx, metav1.ListOptions{})
		if err == nil {
			now := time.Now()
			for _, it := range list.Items {
				pod, _, _ := unstructured.NestedString(it.Object, "status", "podName")
				if _, ok := seen[pod]; !ok && pod != "" {
					seen[pod] = now
				}
			}
		}
		if time.Now().After(deadline) {
			return seen, fmt.Errorf("only %d of %d pods mounted after %s; see the logs in %s", len(seen), n, timeout, filepath.Join(b.env.Cluster.Dir(), "logs"))
		}
		select {
		case <-ctx.Done():
			return seen, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return seen, nil
}

// pollPhase runs the rotation polls: Changes objects get a new version
// before each, then one poll interval passes; it counts what the polls
// cost and measures how long the last change took to reach every pod.
func (b *bench) pollPhase(ctx context.Context) error {
	r := b.rep
	b.cfg.Logf("%d rotation polls of %s", b.cfg.Polls, b.cfg.PollInterval)
	// Let the mount phase's first refreshes settle: one interval.
	time.Sleep(b.cfg.PollInterval + time.Second)
	audit0, err := b.env.Cluster.AuditCounts()
	if err != nil {
		return err
	}
	kv0, tok0 := b.kvGets(ctx), b.tokens(ctx)
	cpu0 := b.cpu()
	start := time.Now()
	var changedAt time.Time
	for p := range b.cfg.Polls {
		for o := range b.cfg.Changes {
			if _, err := b.az(ctx, "keyvault secret set", map[string]any{"vaultName": vault, "name": objectName(o), "value": fmt.Sprintf("v%d-%d", p+1, o)}); err != nil {
				return err
			}
		}
		changedAt = time.Now()
		time.Sleep(b.cfg.PollInterval)
	}
	if b.cfg.Changes > 0 {
		at, err := b.waitRotated(ctx, changedAt, 3*b.cfg.PollInterval+time.Minute)
		if err != nil {
			return err
		}
		r.RotationSec = at.Sub(changedAt).Seconds()
	}
	time.Sleep(2 * time.Second)
	elapsed := time.Since(start)
	audit1, err := b.env.Cluster.AuditCounts()
	if err != nil {
		return err
	}
	// Per poll: per poll interval of the window measured (the last
	// change's propagation and the audit log's lag included).
	polls := elapsed.Seconds() / b.cfg.PollInterval.Seconds()
	r.PollRequests = map[string]float64{}
	for k, v := range diff(audit1, audit0) {
		r.PollRequests[k] = float64(v) / polls
		if verb, _, _ := strings.Cut(k, " "); verb != "get" && verb != "list" && verb != "watch" {
			r.PollWrites += float64(v) / polls
		}
	}
	r.PollKVReadsTotal = b.kvGets(ctx) - kv0
	r.PollKVReads = float64(r.PollKVReadsTotal) / polls
	r.PollWindowSec = elapsed.Seconds()
	// Every node's epochs are offset, so the window touches at most one
	// more epoch per node than it spans.
	r.PollEpochs = int(math.Ceil(polls)) + 1
	r.PollTokens = subTokens(b.tokens(ctx), tok0)
	r.UniquePairs = b.uniquePairs()
	r.StatusObjects = b.statusObjects(ctx)
	cpu1 := b.cpu()
	for i, n := range b.env.Nodes {
		r.DriverRSSMiB = append(r.DriverRSSMiB, rssMiB(b.pid(n.Name+"-driver")))
		r.ProviderRSSMiB = append(r.ProviderRSSMiB, rssMiB(b.pid(n.Name+"-provider")))
		r.DriverCPUPct = append(r.DriverCPUPct, 100*(cpu1[2*i]-cpu0[2*i])/elapsed.Seconds())
		r.ProviderCPUPct = append(r.ProviderCPUPct, 100*(cpu1[2*i+1]-cpu0[2*i+1])/elapsed.Seconds())
	}
	return nil
}

// waitRotated waits until every pod's status object shows a version of
// object s0 newer than the one it had (its version is the newest in
// azsim).
func (b *bench) waitRotated(ctx context.Context, since time.Time, timeout time.Duration) (time.Time, error) {
	show, err := b.az(ctx, "keyvault secret show", map[string]any{"vaultName": vault, "name": objectName(0)})
	if err != nil {
		return time.Time{}, err
	}
	id, _ := show["id"].(string)
	want := id[strings.LastIndex(id, "/")+1:]
	deadline := time.Now().Add(timeout)
	for {
		list, err := b.dyn.Resource(spcpsGVR).Namespace("default").List(ctx, metav1.ListOptions{})
		done := 0
		if err == nil {
			for _, it := range list.Items {
				objs, _, _ := unstructured.NestedSlice(it.Object, "status", "objects")
				for _, o := range objs {
					if m, ok := o.(map[string]any); ok && m["id"] == "secret/"+objectName(0) && m["version"] == want {
						done++
					}
				}
			}
		}
		if done >= len(b.classOf) {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d pods rotated to %s within %s", done, len(b.classOf), want, timeout)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// uniquePairs is the number of (node, principal, object) the pods need:
// the most Key Vault reads a poll should ever cost.
func (b *bench) uniquePairs() int {
	n := 0
	for node := range b.cfg.Nodes {
		ids := map[int]bool{}
		for j := range b.cfg.PodsPerNode {
			ids[b.classOf[fmt.Sprintf("bench-%d-%d", node, j)]%b.cfg.Identities] = true
		}
		n += len(ids) * b.cfg.Objects
	}
	return n
}

func (b *bench) statusObjects(ctx context.Context) int {
	list, err := b.dyn.Resource(spcpsGVR).Namespace("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return -1
	}
	return len(list.Items)
}

func (b *bench) kvGets(ctx context.Context) uint64 {
	st, err := b.env.Azsim(ctx, "keyvault stats", map[string]any{"name": vault})
	if err != nil {
		return 0
	}
	v, _ := st["Gets"].(float64)
	if v == 0 {
		v, _ = st["gets"].(float64)
	}
	return uint64(v)
}

func (b *bench) tokens(ctx context.Context) azsim.TokenStats {
	st, err := b.env.Azsim(ctx, "token stats", nil)
	if err != nil {
		return azsim.TokenStats{}
	}
	get := func(k string) uint64 { v, _ := st[k].(float64); return uint64(v) }
	return azsim.TokenStats{Entra: get("entra"), IMDS: get("imds"), NMI: get("nmi"), Proxy: get("tokenProxy")}
}

func (b *bench) pid(name string) int {
	pid, _ := b.env.Cluster.PID(name)
	return pid
}

// cpu is each node's driver and provider CPU seconds so far.
func (b *bench) cpu() []float64 {
	var out []float64
	for _, n := range b.env.Nodes {
		out = append(out, cpuSeconds(b.pid(n.Name+"-driver")), cpuSeconds(b.pid(n.Name+"-provider")))
	}
	return out
}

// cpuSeconds reads a process's user+system time from /proc (USER_HZ 100).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}

func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func diff(after, before map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

func sum[V int | float64](m map[string]V) V {
	var n V
	for _, v := range m {
		n += v
	}
	return n
}

func subTokens(a, b azsim.TokenStats) azsim.TokenStats {
	return azsim.TokenStats{Entra: a.Entra - b.Entra, IMDS: a.IMDS - b.IMDS, NMI: a.NMI - b.NMI, Proxy: a.Proxy - b.Proxy}
}

func pct(sorted []float64, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, (len(sorted)*p)/100)]
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Print writes the report as a table.
func (r Report) Print(w io.Writer) {
	c := r.Config
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%d nodes × %d pods, %d classes of %d objects, %d identities, poll %s, %d polls changing %d objects\n\n",
		c.Nodes, c.PodsPerNode, c.Classes, c.Objects, c.Identities, c.PollInterval, c.Polls, c.Changes)
	rows := [][2]string{
		{"environment up", fmt.Sprintf("%.1f s", r.StartSec)},
		{"all pods mounted", fmt.Sprintf("%.2f s after the first pod (p50 %.2f s, p95 %.2f s, max %.2f s per pod)", r.AllMountedSec, r.P50Sec, r.P95Sec, r.MaxSec)},
		{"driver API requests, mounting", fmt.Sprintf("%d (%.2f per pod): %s", sum(r.MountRequests), r.MountRequestsPerPod, formatCounts(r.MountRequests, "%d"))},
		{"Key Vault reads, mounting", fmt.Sprintf("%d (%d pods × %d objects = %d)", r.MountKVReads, r.Pods, c.Objects, r.Pods*c.Objects)},
		{"tokens, mounting", fmt.Sprintf("Entra %d, IMDS %d, NMI %d", r.MountTokens.Entra, r.MountTokens.IMDS, r.MountTokens.NMI)},
		{"driver API requests per poll", fmt.Sprintf("%.1f (writes %.1f): %s", sum(r.PollRequests), r.PollWrites, formatCounts(r.PollRequests, "%.1f"))},
		{"Key Vault reads per poll", fmt.Sprintf("%.1f (unique node × principal × object: %d)", r.PollKVReads, r.UniquePairs)},
		{"tokens, polling", fmt.Sprintf("Entra %d, IMDS %d, NMI %d over %d polls", r.PollTokens.Entra, r.PollTokens.IMDS, r.PollTokens.NMI, c.Polls)},
		{"a new version in every pod", fmt.Sprintf("%.1f s after it was set", r.RotationSec)},
		{"objects the driver keeps in etcd", fmt.Sprintf("%d status objects", r.StatusObjects)},
		{"driver RSS per node", spread(r.DriverRSSMiB, "MiB")},
		{"provider RSS per node", spread(r.ProviderRSSMiB, "MiB")},
		{"driver CPU per node, polling", spread(r.DriverCPUPct, "%")},
		{"provider CPU per node, polling", spread(r.ProviderCPUPct, "%")},
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	tw.Flush()
}

// formatCounts lists m's entries by key ("get pods 3, list nodes 1"), or
// "none".
func formatCounts[V int | float64](m map[string]V, verb string) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s "+verb, k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// spread is min / median / max of per-node values.
func spread(v []float64, unit string) string {
	if len(v) == 0 {
		return "-"
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	return fmt.Sprintf("min %.1f, median %.1f, max %.1f %s", s[0], s[len(s)/2], s[len(s)-1], unit)
}
