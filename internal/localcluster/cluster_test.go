package localcluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// requireRoot skips tests that start kubelets when not run as root (as
// `make test` does); everything else about them must work or fail loudly.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("starts kubelets and mounts tmpfs: run as root (make test)")
	}
}

// TestTwoNodeClusterMountsCSIVolume is the foundation's acceptance test: a
// 2-node cluster comes up, a Pod pinned to the second node with a
// secrets-store CSI inline volume makes that node's real kubelet try to mount
// it (and report that no such driver is registered), and Stop leaves no mount
// and no process behind. A second start in the same dir must work too.
func TestTwoNodeClusterMountsCSIVolume(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cfg := Config{Dir: dir, Nodes: 2, Logf: t.Logf}

	c := startCluster(ctx, t, cfg)
	cs, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	// The controller-manager's service-account and root-CA publishers run:
	// pods need both before kubelet will mount their token volumes.
	waitFor(ctx, t, "service account default/default", func() bool {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	waitFor(ctx, t, "config map default/kube-root-ca.crt", func() bool {
		_, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err == nil
	})
	pod := csiPod("csi-inline", c.Nodes[1].Name)
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	ev := waitEvent(ctx, t, cs, "default", pod.Name, "not found in the list of registered CSI drivers")
	// A pod without nodeName is placed by the scheduler.
	free := csiPod("scheduled", "")
	if _, err := cs.CoreV1().Pods("default").Create(ctx, free, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "pod default/scheduled to be scheduled", func() bool {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "scheduled", metav1.GetOptions{})
		return err == nil && p.Spec.NodeName != ""
	})
	if !strings.Contains(ev.Message, "secrets-store.csi.k8s.io") || ev.Source.Host != c.Nodes[1].Name {
		t.Errorf("event %q from host %q: want the secrets-store driver named, from %s", ev.Message, ev.Source.Host, c.Nodes[1].Name)
	}
	pids := c.PIDs()
	if len(pids) != 4+2*cfg.Nodes {
		t.Errorf("got %d child processes, want %d (etcd, apiserver, controller-manager, scheduler, fakecri+kubelet per node)", len(pids), 4+2*cfg.Nodes)
	}
	stopAndCheck(t, c, dir, pids)

	// The same dir again: PKI, etcd data and the nodes are reused.
	c = startCluster(ctx, t, cfg)
	cs, err = c.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("pod from the first start is gone after restart: %v", err)
	}
	stopAndCheck(t, c, dir, c.PIDs())
}

// TestFailedStartCleansUp starts a cluster whose kubelet cannot run: the
// control plane comes up, the node does not, and Start must return an error
// that says why and leave no process and no mount behind.
func TestFailedStartCleansUp(t *testing.T) {
	requireRoot(t)
	real, err := FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for _, b := range binaries {
		if err := os.Symlink(filepath.Join(real, b), filepath.Join(bin, b)); err != nil {
			t.Fatal(err)
		}
	}
	broken := "#!/bin/sh\necho 'kubelet: simulated failure' >&2\nexit 3\n"
	if err := os.Remove(filepath.Join(bin, "kubelet")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "kubelet"), []byte(broken), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := Start(ctx, Config{Dir: dir, BinDir: bin, Nodes: 1})
	if err == nil {
		c.Stop()
		t.Fatal("Start succeeded with a kubelet that exits at once")
	}
	if !strings.Contains(err.Error(), "simulated failure") {
		t.Errorf("error does not show the kubelet's last log lines: %v", err)
	}
	if kids := childProcesses(t); len(kids) > 0 {
		t.Errorf("processes left after a failed start: %v", kids)
	}
	if m, _ := MountsUnder(dir); len(m) > 0 {
		t.Errorf("mounts left after a failed start: %v", m)
	}
}

func startCluster(ctx context.Context, t *testing.T, cfg Config) *Cluster {
	t.Helper()
	start := time.Now()
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Logf("cluster of %d node(s) Ready in %s", cfg.Nodes, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { c.Stop() })
	return c
}

func stopAndCheck(t *testing.T, c *Cluster, dir string, pids []int) {
	t.Helper()
	if err := c.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after Stop (kill 0: %v)", pid, err)
		}
	}
	if kids := childProcesses(t); len(kids) > 0 {
		t.Errorf("child processes left after Stop: %v", kids)
	}
	mounts, err := MountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) > 0 {
		t.Errorf("mounts left under %s after Stop: %v", dir, mounts)
	}
}

// childProcesses lists the PIDs whose parent is this test process.
func childProcesses(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	var kids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name: state, ppid, ...
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
		if f := strings.Fields(rest); len(f) > 1 && f[1] == self {
			kids = append(kids, pid)
		}
	}
	return kids
}

func csiPod(name, node string) *corev1.Pod {
	readOnly := true
	noToken := false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName:                     node,
			AutomountServiceAccountToken: &noToken,
			Containers: []corev1.Container{{
				Name: "busybox", Image: "k8s.gcr.io/e2e-test-images/busybox:1.29-1",
				Command:      []string{"/bin/sleep", "10000"},
				VolumeMounts: []corev1.VolumeMount{{Name: "secrets-store01-inline", MountPath: "/mnt/secrets-store", ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{
				Name: "secrets-store01-inline",
				VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
					Driver: "secrets-store.csi.k8s.io", ReadOnly: &readOnly,
					VolumeAttributes: map[string]string{"secretProviderClass": "azure-kvname-podid"},
				}},
			}},
		},
	}
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitEvent waits for an Event on the pod whose message contains want.
func waitEvent(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, pod, want string) corev1.Event {
	t.Helper()
	sel := fields.OneTermEqualSelector("involvedObject.name", pod).String()
	var seen []string
	for {
		list, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err == nil {
			seen = seen[:0]
			for _, ev := range list.Items {
				if strings.Contains(ev.Message, want) {
					return ev
				}
				seen = append(seen, ev.Reason+": "+ev.Message)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no event on pod %s/%s containing %q; events seen: %q", ns, pod, want, seen)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
