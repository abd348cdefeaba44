package syncer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"kvmount.dev/kvmount/deploy"
	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azure/provider"
	"kvmount.dev/kvmount/internal/localcluster"
	"kvmount.dev/kvmount/internal/pki"
	"kvmount.dev/kvmount/internal/providers"
	"kvmount.dev/kvmount/internal/syncer"
)

// world is a real API server (no nodes: the controller needs none), azsim,
// kvmount's Azure provider on a socket, and a workload identity federated
// with the cluster's service accounts: the controller's whole path but its
// container.
type world struct {
	t testing.TB
	// dir holds the cluster, azsim and the provider socket; stop removes it.
	dir      string
	cluster  *localcluster.Cluster
	kube     kubernetes.Interface
	dyn      dynamic.Interface
	sim      *azsim.Server
	provDir  string
	clientID string
	tenant   string
	clock    *clock
	seq      int
	// webhookCA issues the events tests' webhook certificates; azsim
	// trusts it.
	webhookCA *pki.CA
}

var (
	worldOnce sync.Once
	shared    *world
	worldErr  error
)

// clock is the provider's clock, which a test moves across rotation
// epochs.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// theWorld starts the world once for the package's tests (each test works
// in a namespace of its own); TestMain stops it.
func theWorld(t testing.TB) *world {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("starts a local API server: run as root (make test)")
	}
	worldOnce.Do(func() { shared, worldErr = startWorld() })
	if worldErr != nil {
		t.Fatal(worldErr)
	}
	shared.t = t
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	os.Exit(code)
}

func startWorld() (*world, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "kvs")
	if err != nil {
		return nil, err
	}
	w := &world{dir: dir, provDir: filepath.Join(dir, "providers"), clock: &clock{}}
	if w.cluster, err = localcluster.Start(ctx, localcluster.Config{Dir: filepath.Join(dir, "c"), NoNodes: true}); err != nil {
		return nil, err
	}
	if err := w.applyCRDs(ctx); err != nil {
		return w, err
	}
	if w.kube, err = w.cluster.Client(); err != nil {
		return w, err
	}
	rc, _ := w.cluster.RESTConfig()
	if w.dyn, err = dynamic.NewForConfig(rc); err != nil {
		return w, err
	}
	// Event Grid delivers to webhooks with a certificate of a CA it
	// trusts: the events tests' webhook has one of this CA.
	if err := os.MkdirAll(filepath.Join(dir, "webhook-ca"), 0o700); err != nil {
		return w, err
	}
	if w.webhookCA, err = pki.LoadOrCreateCA(filepath.Join(dir, "webhook-ca"), "webhook CA"); err != nil {
		return w, err
	}
	if w.sim, err = azsim.Start(ctx, azsim.Config{DataDir: filepath.Join(dir, "azsim"), TrustCAFiles: []string{w.cluster.CAPath(), w.webhookCA.CertPath},
		EventRetryScale: 0.01}); err != nil {
		return w, err
	}
	w.tenant = w.sim.TenantID()
	if err := w.identity(ctx); err != nil {
		return w, err
	}
	return w, w.startProvider(ctx, dir)
}

func (w *world) applyCRDs(ctx context.Context) error {
	return fs.WalkDir(deploy.Manifests, "crds", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := deploy.Manifests.ReadFile(path)
		if err != nil {
			return err
		}
		return w.cluster.Apply(ctx, b)
	})
}

// identity makes vault kv1 and a workload identity "sync-id" that may read
// its secrets and keys, federated with every service account named
// "syncer" (one per test namespace is made by the test).
func (w *world) identity(ctx context.Context) error {
	steps := []struct {
		verb string
		args any
	}{
		{"keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"}},
		{"identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "sync-id"}},
	}
	for _, s := range steps {
		if _, err := w.sim.Admin(ctx, s.verb, s.args); err != nil {
			return err
		}
	}
	id, err := w.sim.Admin(ctx, "identity show", arm.IdentityArgs{ResourceGroup: "rg", Name: "sync-id"})
	if err != nil {
		return err
	}
	w.clientID = id["clientId"].(string)
	for _, kind := range []string{"secretPermissions", "keyPermissions", "certificatePermissions"} {
		if _, err := w.sim.Admin(ctx, "keyvault set-policy", map[string]any{"name": "kv1", "spn": w.clientID, kind: []string{"get"}}); err != nil {
			return err
		}
	}
	return nil
}

// federate lets service account ns/sa use the workload identity.
func (w *world) federate(ns, sa string) {
	w.t.Helper()
	w.admin("identity federated-credential create", arm.FederatedArgs{ResourceGroup: "rg", IdentityName: "sync-id", Name: ns + "-" + sa,
		Issuer: w.cluster.Server, Subject: "system:serviceaccount:" + ns + ":" + sa})
}

func (w *world) startProvider(ctx context.Context, dir string) error {
	cloudEnv := filepath.Join(dir, "azsim-cloud.json")
	b, _ := json.Marshal(map[string]string{"name": "AzureStackCloud", "activeDirectoryEndpoint": azsim.LoginURL + "/",
		"keyVaultEndpoint": azsim.VaultResource + "/", "keyVaultDNSSuffix": azsim.VaultDNSSuffix})
	if err := os.WriteFile(cloudEnv, b, 0o600); err != nil {
		return err
	}
	rc := provider.RunConfig{Endpoint: "unix://" + filepath.Join(w.provDir, "azure.sock"), CloudName: "AzureStackCloud", CloudEnvFile: cloudEnv,
		CAFiles: []string{w.sim.CAPath()}, HostOverrides: []string{azsim.HostSuffix + "=" + w.sim.Addr()},
		NMIEndpoint: "http://127.0.0.1:1", IMDSEndpoint: "http://127.0.0.1:1", ConstructPEMChain: true,
		CacheTTL: 2 * time.Minute, NodeName: "sync-controller-0", PerVault: 16, MountTimeout: 30 * time.Second, Now: w.clock.now}
	go func() { _ = provider.RunWithLogger(context.Background(), rc, slog.New(slog.DiscardHandler)) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(w.provDir, "azure.sock")); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the provider did not create its socket")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (w *world) stop() {
	if w.sim != nil {
		w.sim.Close()
	}
	if w.cluster != nil {
		_ = w.cluster.Stop()
	}
	os.RemoveAll(w.dir)
}

func (w *world) admin(verb string, args any) map[string]any {
	w.t.Helper()
	out, err := w.sim.Admin(context.Background(), verb, args)
	if err != nil {
		w.t.Fatalf("azsim %s: %v", verb, err)
	}
	return out
}

// controller is one running controller.
type controller struct {
	*syncer.Controller
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	logs   *bytes.Buffer
	dyn    dynamic.Interface
}

// start runs a controller against the world's cluster; tune adjusts its
// configuration, and each of before runs before the controller starts
// (while its caches can still take indexes).
func (w *world) start(name string, tune func(*syncer.Config), before ...func(*controller)) *controller {
	w.t.Helper()
	rc, err := w.cluster.RESTConfig()
	if err != nil {
		w.t.Fatal(err)
	}
	rc.QPS, rc.Burst = 100, 200
	core, _ := corev1client.NewForConfig(rc)
	leases, _ := coordinationv1.NewForConfig(rc)
	dyn, _ := dynamic.NewForConfig(rc)
	reg := prometheus.NewRegistry()
	var logBuf syncBuffer
	cfg := syncer.Config{Namespace: "kube-system", PodName: name, PodUID: "uid-" + name, Audiences: []string{"api://AzureADTokenExchange"},
		Providers: providers.New([]string{w.provDir}, 0), PollInterval: time.Hour, Workers: 8, PartialSync: true, RepairDrift: true,
		Logger: slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})), Metrics: syncer.NewMetrics(reg)}
	if tune != nil {
		tune(&cfg)
	}
	c := &controller{Controller: syncer.New(cfg, syncer.Clients{Dynamic: dyn, Core: core, Leases: leases}), reg: reg, done: make(chan error, 1), logs: &logBuf.b, dyn: dyn}
	for _, f := range before {
		f(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() { c.done <- c.Run(ctx) }()
	w.t.Cleanup(c.stop)
	return c
}

func (c *controller) stop() {
	c.cancel()
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// metric reads a counter (labels "k=v,k=v", or "" for all series summed).
func (c *controller) metric(name, labels string) float64 {
	families, _ := c.reg.Gather()
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetName()+"="+l.GetValue())
			}
			if labels == "" || strings.Join(got, ",") == labels {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// namespace makes a namespace of the test's own (name and a number, so
// that tests can run again in the same world) with service account
// "syncer" federated with the workload identity.
func (w *world) namespace(prefix string) string {
	w.t.Helper()
	ctx := context.Background()
	w.seq++
	name := fmt.Sprintf("%s-%d", prefix, w.seq)
	if _, err := w.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.kube.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "syncer"}}, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
	w.federate(name, "syncer")
	return name
}

// class applies SecretProviderClass name in ns reading objects (YAML
// entries) from kv1 with the workload identity.
func (w *world) class(ns, name string, objects ...string) {
	w.t.Helper()
	var arr strings.Builder
	for _, o := range objects {
		arr.WriteString("        - |\n")
		for _, line := range strings.Split(o, "\n") {
			arr.WriteString("          " + line + "\n")
		}
	}
	w.apply(fmt.Sprintf(`apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: %s, namespace: %s}
spec:
  provider: azure
  parameters:
    clientID: %s
    keyvaultName: kv1
    tenantId: %s
    objects: |
      array:
%s`, name, ns, w.clientID, w.tenant, arr.String()))
}

func (w *world) apply(manifest string) {
	w.t.Helper()
	if err := w.cluster.Apply(context.Background(), []byte(manifest)); err != nil {
		w.t.Fatalf("apply: %v\n%s", err, manifest)
	}
}

// secretSync applies SecretSync name in ns mapping pairs of sourcePath,
// targetKey, with extra spec lines.
func (w *world) secretSync(ns, name, class string, extra string, pairs ...string) {
	w.t.Helper()
	var data strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		fmt.Fprintf(&data, "    - {sourcePath: %q, targetKey: %q}\n", pairs[i], pairs[i+1])
	}
	w.apply(fmt.Sprintf(`apiVersion: secret-sync.x-k8s.io/v1alpha1
kind: SecretSync
metadata: {name: %s, namespace: %s}
spec:
  secretProviderClassName: %s
  serviceAccountName: syncer
%s  secretObject:
    type: Opaque
    data:
%s`, name, ns, class, extra, data.String()))
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last: %s)", timeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// secret reads ns/name's key (or why not).
func (w *world) secret(ns, name, key string) (string, error) {
	s, err := w.kube.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	v, ok := s.Data[key]
	if !ok {
		return "", fmt.Errorf("no key %s (keys %v)", key, keysOf(s.Data))
	}
	return string(v), nil
}

func (w *world) waitSecret(ns, name, key, want string) {
	w.t.Helper()
	waitFor(w.t, 30*time.Second, fmt.Sprintf("Secret %s/%s %s = %q", ns, name, key, want), func() (bool, string) {
		got, err := w.secret(ns, name, key)
		if err != nil {
			return false, err.Error() + "; " + w.conditions(ns, name)
		}
		return got == want, got
	})
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// status reads a SecretSync's status.
func (w *world) status(ns, name string) ssv1.SecretSyncStatus {
	u, err := w.dyn.Resource(ssv1.Resource).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return ssv1.SecretSyncStatus{}
	}
	var ss ssv1.SecretSync
	_ = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ss)
	return ss.Status
}

// conditions lists a SecretSync's conditions as type=status/reason: message.
func (w *world) conditions(ns, name string) string {
	var out []string
	for _, c := range w.status(ns, name).Conditions {
		out = append(out, fmt.Sprintf("%s=%s/%s: %s", c.Type, c.Status, c.Reason, c.Message))
	}
	return strings.Join(out, " | ")
}

// events lists the Events of a SecretSync as reason: message.
func (w *world) events(ns, name string) string {
	list, err := w.kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.Kind == ssv1.Kind {
			out = append(out, e.Reason+": "+e.Message)
		}
	}
	return strings.Join(out, " | ")
}

func (w *world) deleteSecretSync(ns, name string) {
	w.t.Helper()
	if err := w.dyn.Resource(ssv1.Resource).Namespace(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		w.t.Fatal(err)
	}
}

func (w *world) unstructuredSecretSync(ns, name string) *unstructured.Unstructured {
	w.t.Helper()
	u, err := w.dyn.Resource(ssv1.Resource).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return u
}
