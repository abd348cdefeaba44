package localcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kvmount.dev/kvmount/internal/pki"
)

// Runtime is what runs a node's containers.
type Runtime string

const (
	// RuntimeFake is the CRI's fake runtime: sandboxes and containers are
	// records, nothing runs, but kubelet mounts every volume. Nodes share
	// the host's namespaces, so many fit on one machine.
	RuntimeFake Runtime = "fake"
	// RuntimeContainerd is containerd and runc: real containers on nodes
	// that are machines of their own (see machine).
	RuntimeContainerd Runtime = "containerd"
)

// SandboxImage is the pause image containerd starts every pod with; it
// must be among Config.Images, as nothing can be pulled.
const SandboxImage = "registry.k8s.io/pause:3.10"

// criSocket is containerd's socket inside a node.
const criSocket = "/run/containerd/containerd.sock"

// containerdConfig is node i's containerd configuration. Content and
// snapshots live in the node's directory (kept across restarts, so images
// are imported quickly again); state, sockets and mounts under the node's
// own /run. The settings that differ from containerd's defaults are the
// ones this host needs: restrict_oom_score_adj (the host refuses the
// -998 runc would set for the sandbox and runc then fails with "can't get
// final child's PID from pipe"), cgroupfs (no systemd), Debian's CNI
// plugin dir, no pull ever needed for the sandbox image.
func (c *Cluster) containerdConfig(i int, base string) string {
	return fmt.Sprintf(`version = 2
root = %q
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, filepath.Join(base, "containerd"), criSocket, filepath.Join(base, "opt"), SandboxImage, filepath.Join(base, "cni"))
}

// cniConfig gives node i's pods addresses from its pod range on a bridge
// in the node's namespace, routed (not masqueraded) through the node.
func (c *Cluster) cniConfig(i int) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "kvmount",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/run/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, c.net.podCIDR(i))
}

// startContainerd starts node i's containerd in its machine and imports
// Config.Images into it.
func (c *Cluster) startContainerd(ctx context.Context, m *machine, i int, base string) error {
	name := c.cfg.NodeName(i)
	if err := os.MkdirAll(filepath.Join(base, "cni"), 0o755); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(base, "cni", "10-kvmount.conflist"), []byte(c.cniConfig(i)), 0o644); err != nil {
		return err
	}
	configPath := filepath.Join(base, "containerd.toml")
	if err := pki.WriteFileAtomic(configPath, []byte(c.containerdConfig(i, base)), 0o644); err != nil {
		return err
	}
	p, err := c.runIn(m, name+"-containerd", "containerd", "--config", configPath, "--log-level", "warn")
	if err != nil {
		return err
	}
	// The socket is in the node's /run, seen from here through its root.
	if err := waitFile(ctx, p, fmt.Sprintf("/proc/%d/root%s", m.pid, criSocket), 30*time.Second); err != nil {
		return err
	}
	for _, img := range c.cfg.Images {
		start := time.Now()
		out, err := m.exec("ctr", "--address", criSocket, "--namespace", "k8s.io", "images", "import", img).CombinedOutput()
		if err != nil {
			return fmt.Errorf("node %s: import %s: %w: %s", name, img, err, strings.TrimSpace(string(out)))
		}
		c.cfg.Logf("node %s: imported %s in %s", name, filepath.Base(img), time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// startKubeProxy runs kube-proxy in node i, so that pods (the driver's,
// the provider's) reach the API server at the kubernetes Service's
// address as in any cluster. conntrack limits are left as the host has
// them: they are not per namespace.
func (c *Cluster) startKubeProxy(ctx context.Context, m *machine, i int, base string) (*process, error) {
	name := c.cfg.NodeName(i)
	kubeconfig, err := c.kubeconfigFor("kube-proxy-"+name, pki.Spec{CommonName: "system:kube-proxy", Client: true}, c.nodeServer)
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %q}
hostnameOverride: %q
mode: iptables
clusterCIDR: %q
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: %s:10256
`, kubeconfig, name, c.net.clusterCIDR(), c.net.nodeIP(i))
	path := filepath.Join(base, "kube-proxy.yaml")
	if err := pki.WriteFileAtomic(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	return c.runIn(m, name+"-kube-proxy", "kube-proxy", "--config="+path, "--v=1")
}

// kubeProxyHealthz is node n's kube-proxy health endpoint: 200 once its
// rules are synced, so Services (kubernetes, for the chart's pods) work.
func kubeProxyHealthz(n Node) string { return "http://" + n.IP + ":10256/healthz" }
