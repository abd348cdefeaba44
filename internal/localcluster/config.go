package localcluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Config says where and how to run a local cluster.
type Config struct {
	// Dir holds all state: PKI, etcd data, kubeconfigs, logs, and one root
	// dir per kubelet. Starting again in the same Dir reuses it.
	Dir string
	// BinDir holds etcd, kube-apiserver, kube-controller-manager, kubelet
	// and fakecri (see tools/cluster). Empty means FindBinDir.
	BinDir string
	// Nodes is how many kubelets to run; at least 1, unless NoNodes.
	Nodes int
	// NoNodes runs the control plane only (API server, controller
	// manager, scheduler): for controllers tested against a real API
	// server without pods.
	NoNodes bool
	// NodeName names node i; nil means "node-<i>".
	NodeName func(i int) string
	// BasePort fixes every port as an offset from it, so that a user's
	// kubeconfig stays valid across restarts: the API server listens on
	// BasePort, etcd on +1 and +2, kube-controller-manager on +3,
	// kube-scheduler on +4, and node
	// i's kubelet on +10+2i (healthz +11+2i). Zero picks a random free
	// block, which is what parallel tests want.
	BasePort int
	// SyncFrequency is kubelet's pod sync period, which also paces CSI
	// republish (rotation). Zero keeps kubelet's default of one minute.
	SyncFrequency time.Duration
	// Runtime runs the nodes' containers: RuntimeFake (the default) or
	// RuntimeContainerd, which needs a loopback-only network namespace
	// (scripts/netns-run.sh) for the cluster network it creates.
	Runtime Runtime
	// KubeVersion picks the Kubernetes binaries: "" is BinDir's own
	// (1.37), "1.33" those in BinDir/k8s-1.33 (the version matrix of make
	// test; tools/cluster/build.sh builds them). Empty means
	// $KVMOUNT_KUBE_VERSION.
	KubeVersion string
	// Images are OCI archives imported into every node's containerd
	// before kubelet starts (nothing can be pulled); they must include
	// SandboxImage.
	Images []string
	// APIServerNames are more DNS names for the API server's serving
	// certificate (an AKS control plane's hcp-kubernetes.<id>.svc.cluster.local,
	// which identity binding derives its token proxy's name from).
	APIServerNames []string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Ports are the loopback TCP ports the cluster listens on.
type Ports struct {
	EtcdClient, EtcdPeer, APIServer, ControllerManager, Scheduler int
	// Kubelet and KubeletHealthz hold one port per node.
	Kubelet, KubeletHealthz []int
}

func (c *Config) setDefaults() error {
	if c.Dir == "" {
		return errors.New("localcluster: Config.Dir is required")
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return fmt.Errorf("localcluster: dir %q: %w", c.Dir, err)
	}
	c.Dir = dir
	switch {
	case c.NoNodes:
		c.Nodes = 0
	case c.Nodes < 1:
		c.Nodes = 1
	}
	if c.NodeName == nil {
		c.NodeName = func(i int) string { return fmt.Sprintf("node-%d", i) }
	}
	switch c.Runtime {
	case "":
		c.Runtime = RuntimeFake
	case RuntimeFake, RuntimeContainerd:
	default:
		return fmt.Errorf("localcluster: runtime %q: use %q or %q", c.Runtime, RuntimeFake, RuntimeContainerd)
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.BinDir == "" {
		bin, err := FindBinDir()
		if err != nil {
			return err
		}
		c.BinDir = bin
	}
	if c.KubeVersion == "" {
		c.KubeVersion = os.Getenv("KVMOUNT_KUBE_VERSION")
	}
	return nil
}

// kubeBinaries come from the Kubernetes version under test; the others
// from BinDir.
var kubeBinaries = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"}

// DefaultKubeVersion is the Kubernetes version of BinDir's own binaries
// (tools/cluster/go.mod's; a test keeps the two equal): naming it is the
// same as naming none.
const DefaultKubeVersion = "1.37"

// kubeBinDir is where the Kubernetes binaries of KubeVersion are.
func (c *Config) kubeBinDir() string {
	if c.KubeVersion == "" || c.KubeVersion == DefaultKubeVersion {
		return c.BinDir
	}
	return filepath.Join(c.BinDir, "k8s-"+c.KubeVersion)
}

// binPath is the path of one of the cluster's binaries.
func (c *Config) binPath(bin string) string {
	if slices.Contains(kubeBinaries, bin) {
		return filepath.Join(c.kubeBinDir(), bin)
	}
	return filepath.Join(c.BinDir, bin)
}

// missingKube lists KubeVersion's binaries that are not there.
func (c *Config) missingKube() []string {
	var missing []string
	for _, b := range kubeBinaries {
		if fi, err := os.Stat(c.binPath(b)); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

// ports derives every port from BasePort and checks that each is free,
// naming any that is taken. With no BasePort it picks a random free base
// below the kernel's ephemeral range (32768 and up), where outgoing
// connections take their source ports: a "free" ephemeral port can be taken
// by the API server's own connections before a kubelet binds it.
func (c *Config) ports() (Ports, error) {
	if c.BasePort != 0 {
		p := portsFrom(c.BasePort, c.Nodes)
		return p, p.check()
	}
	var err error
	for range 50 {
		p := portsFrom(20000+10*rand.IntN(1000), c.Nodes)
		if err = p.check(); err == nil {
			return p, nil
		}
	}
	return Ports{}, fmt.Errorf("no free block of ports between 20000 and 30000+: %w", err)
}

func portsFrom(base, nodes int) Ports {
	p := Ports{APIServer: base, EtcdClient: base + 1, EtcdPeer: base + 2, ControllerManager: base + 3, Scheduler: base + 4}
	for i := range nodes {
		p.Kubelet = append(p.Kubelet, base+10+2*i)
		p.KubeletHealthz = append(p.KubeletHealthz, base+11+2*i)
	}
	return p
}

// check fails before anything starts when a port is already in use.
func (p Ports) check() error {
	named := map[string]int{"etcd": p.EtcdClient, "etcd peer": p.EtcdPeer, "kube-apiserver": p.APIServer, "kube-controller-manager": p.ControllerManager, "kube-scheduler": p.Scheduler}
	for i := range p.Kubelet {
		named[fmt.Sprintf("kubelet %d", i)] = p.Kubelet[i]
		named[fmt.Sprintf("kubelet %d healthz", i)] = p.KubeletHealthz[i]
	}
	var errs []error
	for user, port := range named {
		errs = append(errs, checkPortFree(port, user))
	}
	return errors.Join(errs...)
}

// binaries the cluster runs, all expected in BinDir.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl", "fakecri", "nodeinit"}

// MissingBinaries lists the cluster binaries not present in binDir.
func MissingBinaries(binDir string) []string {
	var missing []string
	for _, b := range binaries {
		if fi, err := os.Stat(filepath.Join(binDir, b)); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

// FindBinDir locates the built cluster binaries: $KVMOUNT_BIN_DIR, the
// directory of the running executable, or bin/ at the root of the source
// tree that holds the working directory (how tests find them).
func FindBinDir() (string, error) {
	if d := os.Getenv("KVMOUNT_BIN_DIR"); d != "" {
		return filepath.Abs(d)
	}
	if exe, err := os.Executable(); err == nil {
		if d := filepath.Dir(exe); len(MissingBinaries(d)) == 0 {
			return d, nil
		}
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("find cluster binaries: set KVMOUNT_BIN_DIR or run from the kvmount source tree: %w", err)
	}
	return filepath.Join(root, "bin"), nil
}

// RepoRoot walks up from the working directory to the kvmount source tree's
// root (the directory holding tools/cluster/build.sh).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "cluster", "build.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the kvmount source tree")
		}
		dir = parent
	}
}
