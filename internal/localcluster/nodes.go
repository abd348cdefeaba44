package localcluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kvmount.dev/kvmount/internal/pki"
)

// startNodes starts every node: a fake CRI and a kubelet, or a machine.
func (c *Cluster) startNodes(ctx context.Context) error {
	for i := range c.cfg.Nodes {
		n, err := c.startNode(ctx, i)
		if err != nil {
			return err
		}
		c.Nodes = append(c.Nodes, n)
	}
	return nil
}

func (c *Cluster) startNode(ctx context.Context, i int) (Node, error) {
	name := c.cfg.NodeName(i)
	// Short paths: kubelet and plugins put unix sockets under the root
	// dir, and a socket path may not exceed 107 bytes.
	base := c.path("n", strconv.Itoa(i))
	if c.net != nil {
		return c.startMachineNode(ctx, i, name, base)
	}
	n := Node{Name: name, RootDir: filepath.Join(base, "k"), CRIEndpoint: "unix://" + filepath.Join(base, "cri.sock")}
	for _, d := range []string{n.RootDir, filepath.Join(base, "pod-logs"), filepath.Join(base, "volume-plugins")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return n, fmt.Errorf("node %s: %w", name, err)
		}
	}
	_ = os.Remove(filepath.Join(base, "cri.sock")) // left by an unclean stop
	cri, err := c.run(name+"-cri", "fakecri", "--endpoint="+n.CRIEndpoint)
	if err != nil {
		return n, err
	}
	if err := waitFile(ctx, cri, filepath.Join(base, "cri.sock"), 30*time.Second); err != nil {
		return n, err
	}
	certPath, keyPath, err := c.ca.Issue(c.path("pki"), "kubelet-serving-"+name, pki.Spec{CommonName: name, DNSNames: []string{name, "localhost"}, IPs: loopback, Server: true})
	if err != nil {
		return n, err
	}
	kp := kubeletParams{address: "127.0.0.1", port: c.ports.Kubelet[i], healthzAddress: "127.0.0.1", healthzPort: c.ports.KubeletHealthz[i],
		endpoint: n.CRIEndpoint, dir: base, cert: certPath, key: keyPath}
	kubelet, err := c.startKubelet(n, kp, "127.0.0.1", func(name string, args ...string) (*process, error) { return c.run(name, "kubelet", args...) })
	if err != nil {
		return n, err
	}
	healthz := "http://127.0.0.1:" + strconv.Itoa(c.ports.KubeletHealthz[i]) + "/healthz"
	return n, waitHTTP(ctx, kubelet, http.DefaultClient, healthz, 90*time.Second)
}

// startMachineNode starts node i as a machine: its namespaces, containerd
// with the images, kube-proxy and kubelet, all inside.
func (c *Cluster) startMachineNode(ctx context.Context, i int, name, base string) (Node, error) {
	n := Node{Name: name, RootDir: filepath.Join(base, "k"), IP: c.net.nodeIP(i).String()}
	for _, d := range []string{n.RootDir, filepath.Join(base, "pod-logs"), filepath.Join(base, "volume-plugins"), filepath.Join(base, "providers")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return n, fmt.Errorf("node %s: %w", name, err)
		}
	}
	m, err := c.startMachine(ctx, i, base)
	if err != nil {
		return n, err
	}
	n.PID = m.pid
	if err := c.startContainerd(ctx, m, i, base); err != nil {
		return n, err
	}
	proxy, err := c.startKubeProxy(ctx, m, i, base)
	if err != nil {
		return n, err
	}
	c.mu.Lock()
	c.proxies = append(c.proxies, nodeProxy{node: n, proc: proxy})
	c.mu.Unlock()
	certPath, keyPath, err := c.ca.Issue(c.path("pki"), "kubelet-serving-"+name, pki.Spec{CommonName: name, DNSNames: []string{name}, IPs: []net.IP{c.net.nodeIP(i)}, Server: true})
	if err != nil {
		return n, err
	}
	// Inside the node its directory is NodeDir, whichever node it is.
	kp := kubeletParams{address: "0.0.0.0", port: 10250, healthzAddress: n.IP, healthzPort: 10248,
		endpoint: "unix://" + criSocket, dir: c.nodeDir(), cert: certPath, key: keyPath}
	kubelet, err := c.startKubelet(n, kp, n.IP, func(name string, args ...string) (*process, error) { return c.runIn(m, name, "kubelet", args...) })
	if err != nil {
		return n, err
	}
	return n, waitHTTP(ctx, kubelet, http.DefaultClient, "http://"+n.IP+":10248/healthz", 90*time.Second)
}

// createNode creates node name's object before its kubelet starts, as a
// kubelet that restarts finds it. A new kubelet sets up CSI before it
// registers its node, and that setup needs the node: it fails, and its
// backoff (15 ms × 6ⁿ) next retries 19 s later, the node NotReady until
// then — 20 s of every cluster start. The kubelet adopts the object as
// its own on registration (labels, status). The object carries the node's
// address already (nodes may be created with their status): kube-proxy,
// which starts first, reads it, and exits when a node's addresses change
// from what it read.
func (c *Cluster) createNode(name, ip string) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}}}
	_, err = cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	return nil
}

// kubeletParams are what differs between kubelets: where they serve,
// their runtime, their directory (as the kubelet sees it) and certificate.
type kubeletParams struct {
	address, healthzAddress string
	port, healthzPort       int
	endpoint, dir           string
	cert, key               string
}

// startKubelet writes node n's kubelet configuration and starts it with
// start.
func (c *Cluster) startKubelet(n Node, kp kubeletParams, nodeIP string, start func(name string, args ...string) (*process, error)) (*process, error) {
	kubeconfig, err := c.kubeconfigFor("kubelet-"+n.Name, pki.Spec{CommonName: "system:node:" + n.Name, Orgs: []string{"system:nodes"}, Client: true}, c.nodeServer)
	if err != nil {
		return nil, err
	}
	if err := c.createNode(n.Name, nodeIP); err != nil {
		return nil, err
	}
	configPath := filepath.Join(filepath.Dir(n.RootDir), "kubelet-config.yaml")
	if err := pki.WriteFileAtomic(configPath, []byte(c.kubeletConfig(kp)), 0o600); err != nil {
		return nil, err
	}
	return start(n.Name+"-kubelet",
		"--config="+configPath, "--kubeconfig="+kubeconfig,
		"--root-dir="+filepath.Join(kp.dir, "k"), "--hostname-override="+n.Name, "--node-ip="+nodeIP,
		"--v=1")
}

// kubeletConfig renders a KubeletConfiguration. The settings that differ
// from kubelet's defaults are the ones that let several kubelets share one
// host: no QoS cgroups or node allocatable enforcement, no swap or cgroup
// v1 refusal, distinct ports and dirs, no DNS, and eviction thresholds low
// enough that a busy developer machine never evicts the test pods.
func (c *Cluster) kubeletConfig(kp kubeletParams) string {
	sync := ""
	if c.cfg.SyncFrequency > 0 {
		sync = "syncFrequency: " + c.cfg.SyncFrequency.String() + "\n"
	}
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
healthzBindAddress: %s
healthzPort: %d
readOnlyPort: 0
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %s}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: %s
imageServiceEndpoint: %s
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
localStorageCapacityIsolation: false
podLogsDir: %s
volumePluginDir: %s
resolvConf: ""
clusterDomain: cluster.local
registerNode: true
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
%s`, kp.address, kp.port, kp.healthzAddress, kp.healthzPort, kp.cert, kp.key, c.ca.CertPath,
		kp.endpoint, kp.endpoint, filepath.Join(kp.dir, "pod-logs"), filepath.Join(kp.dir, "volume-plugins"), sync)
}

// waitNodesReady waits until every node has registered and is Ready and,
// on nodes that are machines, its kube-proxy is healthy: a cluster is
// handed over only once pods on every node reach Services (the kubernetes
// Service, which the chart's pods use).
func (c *Cluster) waitNodesReady(ctx context.Context) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	for {
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		notReady := c.notReady(list, err)
		if len(notReady) == 0 {
			return c.waitProxies(ctx)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nodes not Ready after 2m: %s; kubelet logs are in %s", strings.Join(notReady, ", "), c.path("logs"))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// nodeProxy is a machine node's kube-proxy.
type nodeProxy struct {
	node Node
	proc *process
}

// waitProxies waits until every machine node's kube-proxy is healthy.
func (c *Cluster) waitProxies(ctx context.Context) error {
	c.mu.Lock()
	proxies := c.proxies
	c.mu.Unlock()
	for _, p := range proxies {
		if err := waitHTTP(ctx, p.proc, http.DefaultClient, kubeProxyHealthz(p.node), 120*time.Second); err != nil {
			return fmt.Errorf("node %s: %w", p.node.Name, err)
		}
	}
	return nil
}

// notReady names each expected node that is missing or not Ready.
func (c *Cluster) notReady(list *corev1.NodeList, err error) []string {
	ready := map[string]bool{}
	if err == nil {
		for _, n := range list.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready[n.Name] = true
				}

			}
		}
	}
	var missing []string
	for _, n := range c.Nodes {
		if !ready[n.Name] {
			missing = append(missing, n.Name)
		}
	}
	return missing
}

// waitFile waits until path exists (a socket the process creates).
func waitFile(ctx context.Context, p *process, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if done, err := p.exited(); done {
			return fmt.Errorf("%s exited while starting (%v):\n%s", p.name, err, p.tail(15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not create %s within %s:\n%s", p.name, path, timeout, p.tail(15))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
