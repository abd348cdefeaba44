// Package localcluster runs a real Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler) and N real
// kubelets on one machine. With RuntimeContainerd each node is a machine of
// its own (PID, network and mount namespaces) running containerd, runc and
// kube-proxy: real containers, which read their mounted files. With
// RuntimeFake (the default) kubelets share the host, each with its own root
// dir and the CRI's fake runtime: containers never start, but kubelet really
// mounts every volume, CSI ones included, and many nodes fit on one machine.
//
// Everything a cluster creates lives under Config.Dir; Stop ends every child
// process and unmounts everything below that dir.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kvmount.dev/kvmount/internal/pki"
)

// Cluster is a running local cluster.
type Cluster struct {
	cfg   Config
	ports Ports
	ca    *pki.CA

	// KubeconfigPath is an admin kubeconfig for the cluster.
	KubeconfigPath string
	// Server is the API server's URL, which is also the service-account
	// token issuer (its OIDC discovery is open to anonymous readers).
	Server string
	// Nodes describes each kubelet, in order.
	Nodes []Node

	// net and nodeServer are the cluster network and the API server's
	// URL as nodes reach it (RuntimeContainerd); without machines net is
	// nil and nodeServer is Server.
	net        *network
	nodeServer string

	mu    sync.Mutex // guards procs and proxies
	procs []*process
	// proxies are the machine nodes' kube-proxies.
	proxies []nodeProxy
}

// Node is one kubelet of the cluster.
type Node struct {
	Name string
	// RootDir is kubelet's --root-dir: pods' volumes are under
	// RootDir/pods/<uid>/volumes, plugin sockets under RootDir/plugins and
	// registration sockets under RootDir/plugins_registry.
	RootDir string
	// CRIEndpoint is the fake runtime's socket (RuntimeFake).
	CRIEndpoint string
	// IP is the node's address (RuntimeContainerd): kubelet serves there,
	// and host-network pods of the node listen there.
	IP string
	// PID is the node's init (RuntimeContainerd): its namespaces are the
	// node's (nsenter --target PID).
	PID int
}

// Start brings the cluster up and waits until the API server is ready and
// every node reports Ready. On failure everything it started is stopped and
// unmounted again before the error is returned.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if missing := MissingBinaries(cfg.BinDir); len(missing) > 0 {
		return nil, fmt.Errorf("cluster binaries %v missing in %s: run `make cluster-bins`", missing, cfg.BinDir)
	}
	if missing := cfg.missingKube(); len(missing) > 0 {
		return nil, fmt.Errorf("Kubernetes %s binaries %v missing in %s: run `make cluster-bins KUBE_VERSIONS=%s`", cfg.KubeVersion, missing, cfg.kubeBinDir(), cfg.KubeVersion)
	}
	ports, err := cfg.ports()
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, ports: ports, Server: "https://127.0.0.1:" + strconv.Itoa(ports.APIServer)}
	c.nodeServer = c.Server
	if err := c.start(ctx); err != nil {
		stopErr := c.Stop()
		return nil, errors.Join(err, stopErr)
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	for _, d := range []string{c.cfg.Dir, c.path("pki"), c.path("logs"), c.path("etcd")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	// A kubelet killed without Stop (power loss, kill -9 of kvmount) can
	// leave tmpfs mounts behind; clear them before reusing the dir.
	if err := UnmountAll(c.cfg.Dir); err != nil {
		return fmt.Errorf("clear stale mounts under %s: %w", c.cfg.Dir, err)
	}
	if c.cfg.Runtime == RuntimeContainerd {
		net, err := openNetwork(c.cfg.Dir)
		if err != nil {
			return err
		}
		c.net = net
		c.nodeServer = "https://" + net.gateway().String() + ":" + strconv.Itoa(c.ports.APIServer)
		if err := c.shareNodeDirs(); err != nil {
			return err
		}
	}
	steps := []struct {
		what string
		fn   func(context.Context) error
	}{
		{"writing certificates and kubeconfigs", c.writePKI},
		{"starting etcd", c.startEtcd},
		{"starting kube-apiserver", c.startAPIServer},
		{"starting kube-controller-manager", c.startControllerManager},
		{"starting kube-scheduler", c.startScheduler},
		{fmt.Sprintf("starting %d kubelet(s)", c.cfg.Nodes), c.startNodes},
		{"waiting for nodes to be Ready", c.waitNodesReady},
	}
	for _, s := range steps {
		c.cfg.Logf("%s", s.what)
		if err := s.fn(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Stop ends every child process (kubelets first, etcd last) and unmounts
// everything below Config.Dir. It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	var cgroups []string
	for _, n := range c.Nodes {
		if n.PID > 0 {
			cgroups = append(cgroups, containerCgroups(n.PID)...)
		}
	}
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(10 * time.Second)
	}
	err := errors.Join(UnmountAll(c.cfg.Dir), removeCgroups(cgroups, 10*time.Second))
	if c.net != nil {
		err = errors.Join(err, c.net.close())
		c.net = nil
	}
	return err
}

// NodeDir is where every node sees its own directory (RuntimeContainerd):
// its kubelet root dir is NodeDir/k and its providers' sockets are in
// NodeDir/providers, whichever node it is. Empty with RuntimeFake.
func (c *Cluster) NodeDir() string {
	if c.net == nil {
		return ""
	}
	return c.nodeDir()
}

// HostIP is the address nodes reach this host at: the cluster network's
// bridge (RuntimeContainerd), else loopback. Services for the nodes (azsim)
// listen there.
func (c *Cluster) HostIP() string {
	if c.net == nil {
		return "127.0.0.1"
	}
	return c.net.gateway().String()
}

// Runtime is the nodes' container runtime.
func (c *Cluster) Runtime() Runtime { return c.cfg.Runtime }

// Kubectl is a kubectl command for the cluster as admin, run where the
// cluster's network is (this namespace).
func (c *Cluster) Kubectl(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, c.cfg.binPath("kubectl"), append([]string{"--kubeconfig", c.KubeconfigPath}, args...)...)
}

// PIDs returns the process IDs of every running child, which are also their
// process group IDs.
func (c *Cluster) PIDs() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	pids := make([]int, 0, len(c.procs))
	for _, p := range c.procs {
		pids = append(pids, p.pid())
	}
	return pids
}

// CAPath is the cluster CA's certificate, trusted by every component.
func (c *Cluster) CAPath() string { return c.ca.CertPath }

// RESTConfig returns an admin client configuration.
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigPath)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", c.KubeconfigPath, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}

// Client returns an admin clientset.
func (c *Cluster) Client() (kubernetes.Interface, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

func (c *Cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.cfg.Dir}, elem...)...)
}

func (c *Cluster) run(name, bin string, args ...string) (*process, error) {
	return c.runPath(name, c.cfg.binPath(bin), args...)
}

// runPath is run with bin a path, or a command looked up in $PATH.
func (c *Cluster) runPath(name, bin string, args ...string) (*process, error) {
	if !filepath.IsAbs(bin) {
		path, err := exec.LookPath(bin)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (scripts/host-deps.sh installs it)", bin, err)
		}
		bin = path
	}
	p, err := startProcess(c.path("logs"), name, bin, args...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// Run starts another child of the cluster (a CSI driver, a provider),
// logging to <dir>/logs/<name>.log; Stop ends it before the kubelets.
func (c *Cluster) Run(name, bin string, args ...string) error {
	p, err := startProcess(c.path("logs"), name, bin, args...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return nil
}

// StopProcess ends the child started as name, as Stop would, and forgets it.
func (c *Cluster) StopProcess(name string) bool {
	c.mu.Lock()
	var p *process
	for i, q := range c.procs {
		if q.name == name {
			p = q
			c.procs = append(c.procs[:i:i], c.procs[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	if p == nil {
		return false
	}
	p.stop(10 * time.Second)
	return true
}

// Dir is the cluster's state directory.
func (c *Cluster) Dir() string { return c.cfg.Dir }

// PID returns the process ID of the child started as name.
func (c *Cluster) PID(name string) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.name == name {
			return p.pid(), true
		}
	}
	return 0, false
}
