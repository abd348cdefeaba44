package localcluster

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// requireContainers skips unless containers can run here: root, and a
// loopback-only network namespace for the cluster network (make test
// runs in one); the images must have been built (make images).
func requireContainers(t *testing.T) (bin string, images []string) {
	t.Helper()
	requireRoot(t)
	if err := checkIsolated(); err != nil {
		t.Skip(err)
	}
	bin, err := FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"pause", "busybox"} {
		path := filepath.Join(bin, "images", name+".oci.tar")
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("%v: run make images", err)
		}
		images = append(images, path)
	}
	return bin, images
}

// TestContainerdNodes runs real containers on two nodes that are machines
// of their own: a busybox pod on the second node reads a file kubelet
// mounted into it (kubectl exec, through the API server and kubelet's
// streaming), reaches the API server through the kubernetes Service
// (kube-proxy, healthy on every node when Start returns), and Stop leaves
// no mount, process, cgroup or interface behind. The cluster's dir is under
// /var/lib, as kvmount up's is, and the nodes create nothing on the host
// outside it (the CNI cache, /var/lib/cni, is the node's own).
func TestContainerdNodes(t *testing.T) {
	bin, images := requireContainers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, cniBefore := os.Stat("/var/lib/cni")
	// The environment's dir holds the cluster's and files pods mount as
	// host paths (kvmount up's /var/lib/kvmount/<env>/c and
	// …/<env>/azsim-client): the nodes see both.
	env, err := os.MkdirTemp("/var/lib", "kvc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(env) })
	dir := filepath.Join(env, "c")
	hostFile := filepath.Join(env, "client", "ca.crt")
	os.MkdirAll(filepath.Dir(hostFile), 0o755)
	if err := os.WriteFile(hostFile, []byte("from the environment\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCluster(ctx, t, Config{Dir: dir, BinDir: bin, Nodes: 2, Runtime: RuntimeContainerd, Images: images, Logf: t.Logf})
	pids := c.PIDs()
	for _, n := range c.Nodes {
		resp, err := http.Get(kubeProxyHealthz(n))
		if err != nil {
			t.Fatalf("node %s: kube-proxy: %v", n.Name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("node %s was handed over with kube-proxy answering %s", n.Name, resp.Status)
		}
		// kube-proxy exits when its node's addresses change from those
		// it read at start: it must have read the node's own.
		// (1.37 logs "Successfully retrieved NodeIPs" NodeIPs=[…], 1.32
		// "Successfully retrieved node IP(s)" IPs=[…].)
		log, _ := os.ReadFile(filepath.Join(dir, "logs", n.Name+"-kube-proxy.log"))
		read := false
		for _, line := range strings.Split(string(log), "\n") {
			read = read || strings.Contains(line, "Successfully retrieved") && strings.Contains(line, `=["`+n.IP+`"]`)
		}
		if !read || strings.Contains(string(log), "NodeIPs changed") {
			t.Errorf("node %s: kube-proxy did not start with the node's address %s (or saw it change):\n%s", n.Name, n.IP, log)
		}
	}
	// Other packages' tests may run clusters in this namespace at the same
	// time (go test runs packages in parallel): only this one's interfaces
	// must be gone.
	mine := c.net.links()
	cs, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "config map default/kube-root-ca.crt", func() bool {
		_, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err == nil
	})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		Spec: corev1.PodSpec{
			NodeName: c.Nodes[1].Name,
			Containers: []corev1.Container{{Name: "busybox", Image: "k8s.gcr.io/e2e-test-images/busybox:1.29-1",
				Command:      []string{"/bin/sleep", "10000"},
				VolumeMounts: []corev1.VolumeMount{{Name: "env", MountPath: "/env", ReadOnly: true}}}},
			Volumes: []corev1.Volume{{Name: "env", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: filepath.Dir(hostFile), Type: ptr(corev1.HostPathDirectory)}}}},
		},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "pod default/reader Running", func() bool {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "reader", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning
	})
	// stdout only: kubectl may log a harmless websocket message ("Unknown
	// stream id 1, discarding message") on stderr.
	out, err := c.Kubectl(ctx, "exec", "reader", "--", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace").Output()
	if err != nil || strings.TrimSpace(string(out)) != "default" {
		t.Fatalf("kubectl exec cat: %v: %q", err, out)
	}
	if out, err := c.Kubectl(ctx, "exec", "reader", "--", "cat", "/env/ca.crt").Output(); err != nil || string(out) != "from the environment\n" {
		t.Fatalf("the environment's file through a hostPath volume: %v: %q", err, out)
	}
	// A node's kube-proxy programs the Service's rules some time after the
	// node is Ready (on a busy machine, after the first pod runs), as in
	// any cluster: the Service must become reachable, within a minute.
	start := time.Now()
	for {
		out, err = c.Kubectl(ctx, "exec", "reader", "--", "sh", "-c", "nc -w 5 10.96.0.1 443 </dev/null").CombinedOutput()
		if err == nil {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("the kubernetes Service is not reachable from a pod after %s: %v: %s", time.Since(start).Round(time.Second), err, out)
		}
		time.Sleep(time.Second)
	}
	t.Logf("the kubernetes Service answered a pod %s after its first try", time.Since(start).Round(100*time.Millisecond))
	if _, err := os.Stat("/var/lib/cni"); cniBefore != nil && err == nil {
		t.Error("a node created /var/lib/cni on the host")
	}
	// The containers' cgroups go with the nodes: left behind, they slow
	// every later kubelet's start.
	var cgroups []string
	for _, n := range c.Nodes {
		cgroups = append(cgroups, containerCgroups(n.PID)...)
	}
	if len(cgroups) < 2 { // at least the reader's sandbox and container
		t.Fatalf("the nodes' running containers have cgroups %v", cgroups)
	}
	stopAndCheck(t, c, dir, pids)
	for _, h := range hierarchies() {
		for _, cg := range cgroups {
			if _, err := os.Stat(filepath.Join(h, cg)); err == nil {
				t.Errorf("cgroup %s left after Stop", filepath.Join(h, cg))
			}
		}
	}
	names, err := interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if slices.Contains(mine, name) {
			t.Errorf("interface %s left after Stop", name)
		}
	}
}

// TestContainerdNeedsIsolation: nodes with containers are refused where
// the cluster network could reach anything else.
func TestContainerdNeedsIsolation(t *testing.T) {
	if err := checkIsolated(); err != nil {
		if !errors.Is(err, ErrNotIsolated) || !strings.Contains(err.Error(), "netns-run.sh") {
			t.Fatalf("error does not say how to get isolation: %v", err)
		}
	}
}

func ptr[T any](v T) *T { return &v }
