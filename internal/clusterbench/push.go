package clusterbench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kvmount.dev/kvmount/internal/localcluster"
	"kvmount.dev/kvmount/internal/localenv"
)

// Push mode: Key Vault's events instead of polls. The drivers poll once an
// hour (a safety net); the sync controller runs as a process with its
// webhook on loopback (a shared key, a certificate of the cluster's CA,
// which azsim trusts), azsim's Event Grid delivers the vault's events to
// it, and each change is timed from `secret set` until every pod's status
// object shows the new version — the driver writes it right after the
// files.

// PushReport is what push mode measured, per event.
type PushReport struct {
	Events int `json:"events"`
	// Seconds from the new version to the last pod's files (as the pods
	// read them), and to the last pod's status object.
	P50Sec       float64 `json:"p50Seconds"`
	MaxSec       float64 `json:"maxSeconds"`
	StatusP50Sec float64 `json:"statusP50Seconds"`
	StatusMaxSec float64 `json:"statusMaxSeconds"`
	// KVReadsPerEvent against Readers: the (node, principal) pairs that
	// mount the changed object — each reads it once, as no node shares
	// a secret's content with another.
	KVReadsPerEvent float64 `json:"keyVaultReadsPerEvent"`
	Readers         int     `json:"readersPerEvent"`
	// ClassWrites are the controller's writes per event (one per class
	// that reads the object); DriverWrites the drivers' (status objects
	// and the pods' Events, per pod whose files changed, as upstream's
	// rotation writes them).
	ClassWrites  float64            `json:"classWritesPerEvent"`
	DriverWrites map[string]float64 `json:"driverWritesPerEvent"`
	// Delivered and Attempts are azsim's webhook deliveries.
	Delivered, Attempts int `json:"-"`
}

// pushPhase runs the controller, subscribes it to the vault's events and
// times Polls changes of Changes objects each.
func (b *bench) pushPhase(ctx context.Context) error {
	hook, err := b.startController(ctx)
	if err != nil {
		return err
	}
	if err := b.subscribe(ctx, hook); err != nil {
		return err
	}
	events := max(b.cfg.Polls, 1)
	b.cfg.Logf("%d changes pushed by Key Vault's events", events)
	audit0, ctl0, err := b.writes()
	if err != nil {
		return err
	}
	files, err := b.s0Files(ctx)
	if err != nil {
		return err
	}
	kv0 := b.kvGets(ctx)
	var took, status []float64
	for e := range events {
		start := time.Now()
		value := fmt.Sprintf("pushed-%d-0", e)
		for o := range max(b.cfg.Changes, 1) {
			if _, err := b.az(ctx, "keyvault secret set", map[string]any{"vaultName": vault, "name": objectName(o), "value": fmt.Sprintf("pushed-%d-%d", e, o)}); err != nil {
				return err
			}
		}
		at, err := waitFiles(ctx, files, value, 2*time.Minute)
		if err != nil {
			return err
		}
		took = append(took, at.Sub(start).Seconds())
		at, err = b.waitRotated(ctx, start, 2*time.Minute)
		if err != nil {
			return err
		}
		status = append(status, at.Sub(start).Seconds())
	}
	time.Sleep(2 * time.Second) // the audit log trails
	audit1, ctl1, err := b.writes()
	if err != nil {
		return err
	}
	sort.Float64s(took)
	sort.Float64s(status)
	p := &PushReport{Events: events, P50Sec: pct(took, 50), MaxSec: took[len(took)-1], StatusP50Sec: pct(status, 50), StatusMaxSec: status[len(status)-1], Readers: b.readers(),
		KVReadsPerEvent: float64(b.kvGets(ctx)-kv0) / float64(events), ClassWrites: float64(sum(diff(ctl1, ctl0))) / float64(events),
		DriverWrites: map[string]float64{}}
	for k, v := range diff(audit1, audit0) {
		if verb, _, _ := strings.Cut(k, " "); verb != "get" && verb != "list" && verb != "watch" {
			p.DriverWrites[k] = float64(v) / float64(events)
		}
	}
	b.rep.Push = p
	b.rep.StatusObjects = b.statusObjects(ctx)
	for _, n := range b.env.Nodes {
		b.rep.DriverRSSMiB = append(b.rep.DriverRSSMiB, rssMiB(b.pid(n.Name+"-driver")))
		b.rep.ProviderRSSMiB = append(b.rep.ProviderRSSMiB, rssMiB(b.pid(n.Name+"-provider")))
	}
	return nil
}

// s0Files are the paths of object s0's file in every pod's volume, as
// kubelet mounted it on the pod's node.
func (b *bench) s0Files(ctx context.Context) ([]string, error) {
	pods, err := b.kube.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	roots := map[string]string{}
	for _, n := range b.env.Cluster.Nodes {
		roots[n.Name] = n.RootDir
	}
	var out []string
	for _, p := range pods.Items {
		if _, ok := b.classOf[p.Name]; ok {
			out = append(out, filepath.Join(roots[p.Spec.NodeName], "pods", string(p.UID), "volumes", "kubernetes.io~csi", "kv", "mount", objectName(0)))
		}
	}
	if len(out) != len(b.classOf) {
		return nil, fmt.Errorf("%d of %d pods found", len(out), len(b.classOf))
	}
	return out, nil
}

// waitFiles waits until every file holds want.
func waitFiles(ctx context.Context, files []string, want string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	left := slices.Clone(files)
	for {
		left = slices.DeleteFunc(left, func(f string) bool {
			b, err := os.ReadFile(f)
			return err == nil && string(b) == want
		})
		if len(left) == 0 {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d volumes still without the new version after %s (e.g. %s)", len(left), len(files), timeout, left[0])
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// writes are the drivers' and the controller's requests so far.
func (b *bench) writes() (drivers, controller map[string]int, err error) {
	if drivers, err = b.env.Cluster.AuditCounts(); err != nil {
		return nil, nil, err
	}
	all, err := b.env.Cluster.AuditCountsOf(localcluster.SyncControllerUser)
	controller = map[string]int{}
	for k, v := range all {
		if strings.HasPrefix(k, "patch ") || strings.HasPrefix(k, "update ") {
			controller[k] = v
		}
	}
	return drivers, controller, err
}

// readers is the (node, principal) pairs whose pods mount object s0 (every
// class holds every object).
func (b *bench) readers() int { return b.cfg.readers() }

func (c Config) readers() int {
	n := 0
	for node := range c.Nodes {
		ids := map[int]bool{}
		for j := range c.PodsPerNode {
			ids[c.class(node, j)%c.Identities] = true
		}
		n += len(ids)
	}
	return n
}

// controllerRBAC is what the controller needs here: read SecretSyncs and
// classes, record changes on classes, write Events.
const controllerRBAC = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: bench-sync-controller}
rules:
- apiGroups: ["secret-sync.x-k8s.io"]
  resources: ["secretsyncs", "secretsyncs/status"]
  verbs: ["get", "list", "watch", "update", "patch"]
- apiGroups: ["secrets-store.csi.x-k8s.io"]
  resources: ["secretproviderclasses"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bench-sync-controller}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: bench-sync-controller}
subjects:
- {kind: ServiceAccount, name: secrets-store-sync-controller-manager, namespace: kube-system}
`

// startController runs the sync controller with its webhook on loopback
// and returns the webhook's URL (with its key).
func (b *bench) startController(ctx context.Context) (string, error) {
	if err := b.env.Cluster.Apply(ctx, []byte(controllerRBAC)); err != nil {
		return "", err
	}
	kubeconfig, err := b.env.Cluster.ServiceAccountKubeconfig(localenv.ReleaseNamespace, "secrets-store-sync-controller-manager")
	if err != nil {
		return "", err
	}
	cert, key, err := b.env.Cluster.IssueServingCert("bench-events", []string{"127.0.0.1"})
	if err != nil {
		return "", err
	}
	dir := filepath.Join(b.cfg.Dir, "controller")
	if err := os.MkdirAll(filepath.Join(dir, "providers"), 0o755); err != nil {
		return "", err
	}
	secret := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-key"
	keyFile := filepath.Join(dir, "webhook-key")
	if err := os.WriteFile(keyFile, []byte(secret), 0o600); err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if b.controller, err = localcluster.StartProcess(filepath.Join(b.env.Cluster.Dir(), "logs"), "sync-controller", filepath.Join(b.cfg.BinDir, "secrets-sync-controller"),
		"--kubeconfig", kubeconfig, "--provider-volume", filepath.Join(dir, "providers"), "--rotation-poll-interval=0", "--repair-drift=false",
		"--health-probe-bind-address=", "--metrics-bind-address=", "--namespace", localenv.ReleaseNamespace, "--pod-name", "bench-controller",
		"--events-webhook-bind-address", addr, "--events-webhook-tls-cert-file", cert, "--events-webhook-tls-key-file", key,
		"--events-webhook-key-file", keyFile); err != nil {
		return "", err
	}
	return "https://" + addr + "/events?key=" + secret, waitListening(ctx, addr, 30*time.Second)
}

// subscribe sends the vault's new versions to the webhook.
func (b *bench) subscribe(ctx context.Context, hook string) error {
	v, err := b.az(ctx, "keyvault show", map[string]any{"name": vault})
	if err != nil {
		return err
	}
	if _, err := b.az(ctx, "eventgrid system-topic create", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": vault + "-events",
		"topicType": "Microsoft.KeyVault.vaults", "source": v["id"]}); err != nil {
		return err
	}
	_, err = b.az(ctx, "eventgrid system-topic event-subscription create", map[string]any{"resourceGroup": localenv.ResourceGroup,
		"systemTopicName": vault + "-events", "name": "kvmount", "endpoint": hook, "includedEventTypes": []string{"Microsoft.KeyVault.SecretNewVersionCreated"}})
	return err
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until addr accepts connections.
func waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the sync controller is not listening on %s after %s: %w", addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
