package localenv

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kvmount.dev/kvmount/deploy"
	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/podidentity"
	"kvmount.dev/kvmount/internal/csi"
	"kvmount.dev/kvmount/internal/localcluster"
)

// applyCRDs applies aad-pod-identity's CRDs (azsim's NMI and `aks
// pod-identity add` use them) and, for host-process drivers, the
// secrets-store CRDs (the chart brings its own).
func (e *Env) applyCRDs(ctx context.Context) error {
	if err := e.Cluster.Apply(ctx, podidentity.CRDs); err != nil {
		return fmt.Errorf("apply aad-pod-identity CRDs: %w", err)
	}
	return nil
}

// applyManifests applies the plain manifests the host-process drivers run
// under: the secrets-store CRDs, the CSIDriver and the RBAC.
func (e *Env) applyManifests(ctx context.Context) error {
	files, err := fs.Glob(deploy.Manifests, "crds/*.yaml")
	if err != nil {
		return err
	}
	csidriver, err := e.csiDriverManifest()
	if err != nil {
		return err
	}
	for _, f := range append(files, csidriver, "rbac.yaml", "rbac-secret-sync.yaml", "rbac-provider-azure.yaml", "rbac-aggregated.yaml") {
		b, err := deploy.Manifests.ReadFile(f)
		if err != nil {
			return err
		}
		if err := e.Cluster.Apply(ctx, b); err != nil {
			return fmt.Errorf("apply %s: %w", f, err)
		}
	}
	return nil
}

// csiDriverManifest is the CSIDriver for the cluster's version: with
// serviceAccountTokenInSecrets from 1.35, which older API servers reject.
func (e *Env) csiDriverManifest() (string, error) {
	cs, err := e.Cluster.Client()
	if err != nil {
		return "", err
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return "", fmt.Errorf("API server version: %w", err)
	}
	minor, _ := strconv.Atoi(strings.TrimRight(v.Minor, "+"))
	if v.Major == "1" && minor < 35 {
		return "csidriver.yaml", nil
	}
	return "kubernetes-1.35+/csidriver.yaml", nil
}

// startNodes runs each node's provider and driver, as the DaemonSets would.
func (e *Env) startNodes() error {
	if err := e.writeCloudEnv(); err != nil {
		return err
	}
	var err error
	for i := range e.Cluster.Nodes {
		n := &e.Nodes[i]
		if n.DriverMetrics, err = freeAddr(); err != nil {
			return err
		}
		if n.ProviderMetrics, err = freeAddr(); err != nil {
			return err
		}
		if err := e.StartProvider(i); err != nil {
			return err
		}
		if err := e.StartDriver(i); err != nil {
			return err
		}
	}
	return nil
}

// fillNodes records where each node's sockets are, as the host sees them,
// and its endpoints.
func (e *Env) fillNodes() {
	ep, _ := azsim.ReadEndpoints(e.AzsimDir)
	for i, cn := range e.Cluster.Nodes {
		n := &e.Nodes[i]
		n.NMI = ep.NMI[n.Name]
		n.ProviderDir = filepath.Join(filepath.Dir(cn.RootDir), "providers")
		n.ProviderSocket = filepath.Join(n.ProviderDir, "azure.sock")
		n.DriverSocket = filepath.Join(cn.RootDir, "plugins", "csi-secrets-store", "csi.sock")
	}
}

// StartProvider runs node i's Azure provider.
func (e *Env) StartProvider(i int) error {
	n := e.Nodes[i]
	ep, err := azsim.ReadEndpoints(e.AzsimDir)
	if err != nil {
		return err
	}
	kubeconfig, err := e.Cluster.ServiceAccountKubeconfig("kube-system", "csi-secrets-store-provider-azure")
	if err != nil {
		return err
	}
	args := []string{"--endpoint", "unix://" + n.ProviderSocket, "--imds-endpoint", n.IMDS, "--nmi-endpoint", n.NMI, "--kubeconfig", kubeconfig,
		"--cloud-name", "AzureStackCloud", "--cloud-env-file", e.CloudEnvFile,
		"--ca-file", ep.CA, "--host-override", azsim.HostSuffix + "=" + ep.Address,
		"--healthz-addr", "none", "--metrics-addr", n.ProviderMetrics, "--node-name", n.Name, "--token-proxy-url", ep.TokenProxy}
	if e.cfg.RotationPollInterval > 0 {
		// The node cache's epochs are the driver's rotation epochs.
		args = append(args, "--cache-ttl", e.cfg.RotationPollInterval.String())
	}
	return e.Cluster.Run(n.Name+"-provider", e.bin("provider-azure"), args...)
}

// StartDriver runs node i's CSI driver.
func (e *Env) StartDriver(i int) error {
	n := e.Nodes[i]
	// The driver acts as its service account, under deploy/rbac.yaml's
	// least privilege, as in a cluster.
	kubeconfig, err := e.Cluster.ServiceAccountKubeconfig("kube-system", "secrets-store-csi-driver")
	if err != nil {
		return err
	}
	args := []string{"--endpoint", "unix://" + n.DriverSocket, "--nodeid", n.Name,
		"--provider-volume", n.ProviderDir, "--additional-provider-volume-paths", "",
		"--registration-dir", filepath.Join(e.Cluster.Nodes[i].RootDir, "plugins_registry"),
		"--kubeconfig", kubeconfig, "--healthz-addr", "", "--metrics-addr", n.DriverMetrics, "--enable-secret-rotation=true"}
	if e.cfg.RotationPollInterval > 0 {
		args = append(args, "--rotation-poll-interval", e.cfg.RotationPollInterval.String())
	}
	return e.Cluster.Run(n.Name+"-driver", e.bin("secrets-store-csi-driver"), args...)
}

// StopDriver ends node i's CSI driver (host processes).
func (e *Env) StopDriver(i int) { e.Cluster.StopProcess(e.Nodes[i].Name + "-driver") }

// RestartDriver ends node i's CSI driver and starts it again: the host
// process, or the chart's pod (deleted, and the DaemonSet's replacement
// waited for).
func (e *Env) RestartDriver(ctx context.Context, i int) error {
	if e.Cluster.Runtime() == localcluster.RuntimeContainerd {
		return e.restartDriverPod(ctx, i)
	}
	e.StopDriver(i)
	return e.StartDriver(i)
}

// waitRegistered waits until every kubelet lists the driver on its CSINode.
func (e *Env) waitRegistered(ctx context.Context) error {
	cs, err := e.Cluster.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	for _, n := range e.Nodes {
		for {
			node, err := cs.StorageV1().CSINodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err == nil && slices.ContainsFunc(node.Spec.Drivers, func(d storagev1.CSINodeDriver) bool { return d.Name == csi.DriverName }) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("kubelet on %s never registered %s; see the driver's log in %s", n.Name, csi.DriverName, filepath.Join(e.Cluster.Dir(), "logs"))
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// Stop ends every process and unmounts everything.
func (e *Env) Stop() error {
	var err error
	if e.Cluster != nil {
		err = e.Cluster.Stop()
	}
	if e.azsim != nil {
		e.azsim.Stop()
	}
	if e.lock != nil {
		e.lock.Close() // releases the flock
		e.lock = nil
	}
	return err
}

// freeAddr is a loopback address no one listens on (below the ephemeral
// range, like the cluster's ports).
func freeAddr() (string, error) {
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr, nil
		}
	}
	return "", fmt.Errorf("no free loopback port for metrics")
}
