// Package localenv is kvmount's whole chain on one machine: azsim (the
// local Azure cloud) with an AKS cluster record whose node pool scale set
// holds one instance per node, a real local Kubernetes cluster whose kubelets
// are named like those instances, the CRDs and the CSIDriver, and on every
// node the CSI driver and the Azure provider, wired to that node's IMDS and
// NMI. `kvmount up` and the end-to-end tests both start it.
package localenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/cli"
	"kvmount.dev/kvmount/internal/localcluster"
)

// Names of the AKS cluster record the environment creates.
const (
	ResourceGroup = "kvmount-rg"
	ClusterName   = "kvmount-aks"
)

// Config says where and how big.
type Config struct {
	Dir    string
	BinDir string
	Nodes  int
	// BasePort fixes the cluster's ports (see localcluster.Config); azsim
	// listens on BasePort+100. Zero picks free ports.
	BasePort int
	// SyncFrequency is kubelet's sync period, which paces rotation.
	SyncFrequency time.Duration
	// RotationPollInterval is the driver's (default 2m).
	RotationPollInterval time.Duration
	// KeyVaultLatency is added to every Key Vault request (azsim
	// --latency), to model a remote service.
	KeyVaultLatency time.Duration
	// Runtime is the nodes' runtime. RuntimeContainerd (the default)
	// runs the driver and provider from the chart, in containers, like a
	// cluster; it needs a loopback-only network namespace. RuntimeFake
	// runs them as host processes next to fake-CRI kubelets: many nodes,
	// storms, and the processes' own memory and CPU.
	Runtime localcluster.Runtime
	// ImagesDir holds the images (make images); empty is BinDir/images.
	ImagesDir string
	// KubeVersion picks the Kubernetes binaries (localcluster.Config).
	KubeVersion string
	// SyncController installs the SecretSync controller (the chart's
	// syncController) beside the node DaemonSets (RuntimeContainerd).
	SyncController bool
	// OnlyUsedImages imports into the nodes only the images the
	// configuration runs: without SyncController, not the sync
	// controller's (2 s of each node's start). Tests set it; kvmount up
	// does not, so that its chart can be upgraded to the controller.
	OnlyUsedImages bool
	// EventRetryScale is azsim's --event-retry-scale: Event Grid's retry
	// schedule sped up for tests (0: the service's own).
	EventRetryScale float64
	Logf            func(format string, args ...any)
}

// Env is a running environment.
type Env struct {
	Cluster  *localcluster.Cluster
	AzsimDir string
	// CloudEnvFile is the AzureStackCloud file pointing at azsim.
	CloudEnvFile string
	Nodes        []Node
	TenantID     string
	// ControlPlaneID is the AKS cluster record's control plane ID, which
	// the API server's certificate carries.
	ControlPlaneID string

	cfg   Config
	azsim *localcluster.Process
	lock  *os.File
	// overrides are values UpgradeChart set over ChartValues;
	// userValues, values files InstallWithValues passes first.
	overrides  map[string]any
	userValues []string
}

// Node is one node's wiring.
type Node struct {
	Name                                      string
	IMDS, NMI                                 string
	ProviderDir, ProviderSocket, DriverSocket string
	// DriverMetrics and ProviderMetrics are where /metrics is served
	// (host:port).
	DriverMetrics, ProviderMetrics string
	// DriverPod and ProviderPod are the chart's pods on the node
	// (RuntimeContainerd).
	DriverPod, ProviderPod string
}

// Start brings everything up; on failure it stops what it started.
func Start(ctx context.Context, cfg Config) (*Env, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Nodes < 1 {
		cfg.Nodes = 1
	}
	if cfg.Runtime == "" {
		cfg.Runtime = localcluster.RuntimeContainerd
	}
	if cfg.ImagesDir == "" {
		cfg.ImagesDir = filepath.Join(cfg.BinDir, "images")
	}
	e := &Env{cfg: cfg, AzsimDir: filepath.Join(cfg.Dir, "azsim")}
	// Before anything is touched: another environment may be running in
	// this directory, and starting would break it.
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	e.lock = lock
	if err := e.start(ctx); err != nil {
		return nil, fmt.Errorf("%w%s", err, e.stopOnError())
	}
	return e, nil
}

// ErrRunning is an environment already running in the directory.
var ErrRunning = errors.New("an environment is already running")

// lockDir takes the directory's lock (an flock on <dir>/lock holding the
// pid), which the environment holds until Stop or its process ends.
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("%w in %s (pid %s): stop it (Ctrl-C where it runs, or kill %s) or use another --dir", ErrRunning, dir, strings.TrimSpace(string(pid)), strings.TrimSpace(string(pid)))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

func (e *Env) stopOnError() string {
	if err := e.Stop(); err != nil {
		return fmt.Sprintf(" (and stopping: %v)", err)
	}
	return ""
}

func (e *Env) start(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(e.cfg.Dir, "logs"), 0o700); err != nil {
		return err
	}
	var imgs []string
	if e.cfg.Runtime == localcluster.RuntimeContainerd {
		var err error
		if imgs, err = images(e.cfg.ImagesDir, !e.cfg.OnlyUsedImages || e.cfg.SyncController); err != nil {
			return err
		}
	}
	e.cfg.Logf("starting azsim, the local Azure cloud")
	if err := e.startAzsim(ctx, ""); err != nil {
		return err
	}
	names, err := e.aksNodes(ctx)
	if err != nil {
		return err
	}
	ep, err := azsim.ReadEndpoints(e.AzsimDir)
	if err != nil {
		return err
	}
	// The API server's certificate names the control plane's ID, as
	// AKS's does: identity binding finds its token proxy by it.
	e.ControlPlaneID = azsim.ControlPlaneID(ep.SubscriptionID, ResourceGroup, ClusterName)
	c, err := localcluster.Start(ctx, localcluster.Config{Dir: filepath.Join(e.cfg.Dir, "c"), BinDir: e.cfg.BinDir, Nodes: len(names),
		NodeName: func(i int) string { return names[i] }, BasePort: e.cfg.BasePort, SyncFrequency: e.cfg.SyncFrequency,
		Runtime: e.cfg.Runtime, Images: imgs, KubeVersion: e.cfg.KubeVersion, APIServerNames: []string{azsim.APIServerName(e.ControlPlaneID)}, Logf: e.cfg.Logf})
	if err != nil {
		return err
	}
	e.Cluster = c
	// azsim again, now with the cluster: pod identity's NMI reads pods and
	// bindings, and workload identity trusts the cluster's issuer.
	e.azsim.Stop()
	if err := e.startAzsim(ctx, c.KubeconfigPath); err != nil {
		return err
	}
	e.cfg.Logf("applying CRDs")
	if err := e.applyCRDs(ctx); err != nil {
		return err
	}
	e.fillNodes()
	if c.Runtime() == localcluster.RuntimeContainerd {
		e.cfg.Logf("installing the chart: the CSI driver and the Azure provider on %d node(s)", len(c.Nodes))
		if err := e.installChart(ctx); err != nil {
			return err
		}
	} else {
		e.cfg.Logf("starting the CSI driver and the Azure provider on %d node(s)", len(c.Nodes))
		if err := e.applyManifests(ctx); err != nil {
			return err
		}
		if err := e.startNodes(); err != nil {
			return err
		}
	}
	e.cfg.Logf("waiting for kubelets to register the driver")
	if err := e.waitRegistered(ctx); err != nil {
		return err
	}
	return e.writeState()
}

// State is what env.json in the environment's dir records for other
// commands (kvmount files): where things are.
type State struct {
	Kubeconfig string      `json:"kubeconfig"`
	AzsimDir   string      `json:"azsimDir"`
	AzsimCA    string      `json:"azsimCA"`
	Nodes      []StateNode `json:"nodes"`
}

// StateNode is one node's name and kubelet root dir.
type StateNode struct {
	Name    string `json:"name"`
	RootDir string `json:"rootDir"`
}

func (e *Env) writeState() error {
	st := State{Kubeconfig: e.Cluster.KubeconfigPath, AzsimDir: e.AzsimDir, AzsimCA: filepath.Join(e.AzsimDir, "ca.crt")}
	for _, n := range e.Cluster.Nodes {
		st.Nodes = append(st.Nodes, StateNode{Name: n.Name, RootDir: n.RootDir})
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(e.cfg.Dir, "env.json"), b, 0o644)
}

// ReadState reads env.json from an environment's dir.
func ReadState(dir string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(dir, "env.json"))
	if err != nil {
		return st, fmt.Errorf("no environment in %s (start one with kvmount up --dir %s): %w", dir, dir, err)
	}
	return st, json.Unmarshal(b, &st)
}

func (e *Env) bin(name string) string { return filepath.Join(e.cfg.BinDir, name) }

func (e *Env) startAzsim(ctx context.Context, kubeconfig string) error {
	addr := "127.0.0.1:0"
	switch prev, err := azsim.ReadEndpoints(e.AzsimDir); {
	case e.cfg.BasePort != 0:
		addr = "127.0.0.1:" + strconv.Itoa(e.cfg.BasePort+100)
	case kubeconfig != "" && err == nil:
		addr = prev.Address // the restart keeps the port
	}
	// Nodes that are machines reach azsim on the cluster network, as
	// their own addresses (which its IMDS and NMI tell them apart by).
	var nodeArgs []string
	if kubeconfig != "" && e.Cluster.Runtime() == localcluster.RuntimeContainerd {
		_, port, _ := net.SplitHostPort(addr)
		addr = net.JoinHostPort(e.Cluster.HostIP(), port)
		for _, n := range e.Cluster.Nodes {
			nodeArgs = append(nodeArgs, "--node-address", n.Name+"="+n.IP)
		}
	}
	_ = os.Remove(filepath.Join(e.AzsimDir, "endpoints.json"))
	args := []string{"serve", "--data-dir", e.AzsimDir, "--addr", addr}
	if e.cfg.BasePort != 0 && kubeconfig == "" {
		if err := localcluster.CheckPortFree(e.cfg.BasePort+100, "azsim"); err != nil {
			return err
		}
	}
	if e.cfg.KeyVaultLatency > 0 {
		args = append(args, "--latency", e.cfg.KeyVaultLatency.String())
	}
	if e.cfg.EventRetryScale > 0 {
		args = append(args, "--event-retry-scale", strconv.FormatFloat(e.cfg.EventRetryScale, 'g', -1, 64))
	}
	if kubeconfig != "" {
		args = append(args, "--kubeconfig", kubeconfig, "--trust-ca", e.Cluster.CAPath())
		// AKS identity binding's token proxy, with a certificate from the
		// cluster's CA for the name the control plane's ID gives.
		cert, key, err := e.Cluster.IssueServingCert("token-proxy", []string{azsim.TokenProxyServerName(e.ControlPlaneID)})
		if err != nil {
			return err
		}
		args = append(args, "--token-proxy-cert", cert, "--token-proxy-key", key)
	}
	args = append(args, nodeArgs...)
	p, err := localcluster.StartProcess(filepath.Join(e.cfg.Dir, "logs"), "azsim", e.bin("azsim"), args...)
	if err != nil {
		return err
	}
	e.azsim = p
	for deadline := time.Now().Add(30 * time.Second); ; {
		if ep, err := azsim.ReadEndpoints(e.AzsimDir); err == nil {
			if c, err := net.DialTimeout("tcp", ep.Address, time.Second); err == nil {
				c.Close()
				e.TenantID = ep.TenantID
				return nil
			}
		}
		if done, err := p.Exited(); done {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("azsim did not start within 30s; see %s", filepath.Join(e.cfg.Dir, "logs", "azsim.log"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Azsim runs an azsim admin verb.
func (e *Env) Azsim(ctx context.Context, verb string, args map[string]any) (map[string]any, error) {
	out, err := cli.Call(ctx, e.AzsimDir, verb, args)
	if err != nil {
		return nil, err
	}
	m, _ := out.(map[string]any)
	return m, nil
}

// aksNodes creates (once) the AKS cluster record and returns its node
// names: the scale set instances' computer names.
func (e *Env) aksNodes(ctx context.Context) ([]string, error) {
	if _, err := e.Azsim(ctx, "aks show", map[string]any{"resourceGroup": ResourceGroup, "name": ClusterName}); err != nil {
		if _, err := e.Azsim(ctx, "aks create", map[string]any{"resourceGroup": ResourceGroup, "name": ClusterName,
			"nodeCount": e.cfg.Nodes, "enableAddons": "azure-keyvault-secrets-provider"}); err != nil {
			return nil, err
		}
	}
	show, err := e.Azsim(ctx, "aks show", map[string]any{"resourceGroup": ResourceGroup, "name": ClusterName})
	if err != nil {
		return nil, err
	}
	nodeRG, vmss, err := e.nodePool(ctx, show)
	if err != nil {
		return nil, err
	}
	inst, err := e.Azsim(ctx, "vmss list-instances", map[string]any{"resourceGroup": nodeRG, "name": vmss})
	if err != nil {
		return nil, err
	}
	var names []string
	items, _ := inst["value"].([]any)
	for _, it := range items[:min(len(items), e.cfg.Nodes)] {
		m := it.(map[string]any)
		names = append(names, m["osProfile"].(map[string]any)["computerName"].(string))
		e.Nodes = append(e.Nodes, Node{Name: names[len(names)-1], IMDS: m["imdsEndpoint"].(string)})
	}
	if len(names) < e.cfg.Nodes {
		return nil, fmt.Errorf("the AKS cluster record has %d nodes; %d asked for: remove %s to start afresh", len(names), e.cfg.Nodes, e.cfg.Dir)
	}
	return names, nil
}

// NodePool returns the AKS cluster record's node resource group and its
// node pool's scale set.
func (e *Env) NodePool(ctx context.Context) (nodeRG, vmss string, err error) {
	show, err := e.Azsim(ctx, "aks show", map[string]any{"resourceGroup": ResourceGroup, "name": ClusterName})
	if err != nil {
		return "", "", err
	}
	return e.nodePool(ctx, show)
}

func (e *Env) nodePool(ctx context.Context, aks map[string]any) (string, string, error) {
	nodeRG, _ := aks["nodeResourceGroup"].(string)
	list, err := e.Azsim(ctx, "vmss list", map[string]any{"resourceGroup": nodeRG})
	if err != nil {
		return "", "", err
	}
	vmss, err := onlyScaleSet(nodeRG, list)
	return nodeRG, vmss, err
}

// onlyScaleSet is the name of the one scale set an `az vmss list` answer
// holds: the local AKS record has one node pool.
func onlyScaleSet(rg string, list map[string]any) (string, error) {
	sets, _ := list["value"].([]any)
	if len(sets) != 1 {
		return "", fmt.Errorf("node resource group %s holds %d scale sets, want 1 (the node pool): remove the environment's dir to start afresh", rg, len(sets))
	}
	m, _ := sets[0].(map[string]any)
	name, _ := m["name"].(string)
	if name == "" {
		return "", fmt.Errorf("node resource group %s: the scale set has no name", rg)
	}
	return name, nil
}

// writeCloudEnv writes the AzureStackCloud file that points at azsim.
func (e *Env) writeCloudEnv() error {
	e.CloudEnvFile = filepath.Join(e.cfg.Dir, "azsim-cloud.json")
	b, _ := json.Marshal(map[string]string{"name": "AzureStackCloud", "activeDirectoryEndpoint": azsim.LoginURL + "/",
		"keyVaultEndpoint": azsim.VaultResource + "/", "keyVaultDNSSuffix": azsim.VaultDNSSuffix})
	return os.WriteFile(e.CloudEnvFile, b, 0o644)
}
