package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"kvmount.dev/kvmount/internal/localcluster"
	"kvmount.dev/kvmount/internal/localenv"
)

// maxNodes bounds --nodes: each node is a kubelet, a driver and a provider.
const maxNodes = 50

// upConfig is what `kvmount up` is told by its flags.
type upConfig struct {
	nodes    int
	dir      string
	basePort int
	runtime  string
	kube     string
}

func parseUp(args []string) (upConfig, error) {
	var cfg upConfig
	fs := flag.NewFlagSet("kvmount up", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&cfg.nodes, "nodes", 2, "number of nodes (instances of the AKS node pool scale set)")
	fs.StringVar(&cfg.dir, "dir", "/var/lib/kvmount/env", "state directory (azsim, PKI, etcd, kubelet root dirs, logs); reused on the next start")
	fs.IntVar(&cfg.basePort, "base-port", 16443, "API server port; etcd, controllers and kubelets use the ports above it, azsim base+100")
	fs.StringVar(&cfg.runtime, "runtime", "containerd", "containerd: the chart's driver and provider in real containers on nodes with their own network (in a new loopback-only network namespace); fake: host processes and the fake CRI, on this host's loopback, many nodes")
	fs.StringVar(&cfg.kube, "kube-version", "", "Kubernetes minor version of the cluster, e.g. 1.33 (bin/k8s-1.33, built by make cluster-bins); default "+localcluster.DefaultKubeVersion+", bin/ itself")
	pos, err := parseVerb(fs, args, os.Stdout, "kvmount up [--nodes N] [--dir DIR] [--base-port PORT] [--runtime containerd|fake] [--kube-version 1.33]")
	if err != nil {
		return cfg, err
	}
	if len(pos) > 0 {
		return cfg, fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	if cfg.nodes < 1 || cfg.nodes > maxNodes {
		return cfg, fmt.Errorf("--nodes %d: choose between 1 and %d", cfg.nodes, maxNodes)
	}
	if cfg.runtime != string(localcluster.RuntimeContainerd) && cfg.runtime != string(localcluster.RuntimeFake) {
		return cfg, fmt.Errorf("--runtime %q: choose containerd or fake", cfg.runtime)
	}
	if cfg.basePort < 1024 || cfg.basePort > 65000 {
		return cfg, fmt.Errorf("--base-port %d: choose between 1024 and 65000", cfg.basePort)
	}
	return cfg, nil
}

// up starts the local environment, prints how to use it and keeps it
// running until ctx is cancelled (Ctrl-C), then stops it cleanly.
func up(ctx context.Context, args []string) error {
	cfg, err := parseUp(args)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("up must run as root: kubelet mounts tmpfs volumes and writes under its root dir; try `sudo kvmount up`")
	}
	if err := isolate(localcluster.Runtime(cfg.runtime)); err != nil {
		return err
	}
	progress := newProgress(os.Stdout)
	defer progress.close()
	binDir, err := ensureBins(ctx, progress)
	if err != nil {
		return err
	}
	start := time.Now()
	env, err := localenv.Start(ctx, localenv.Config{Dir: cfg.dir, BinDir: binDir, Nodes: cfg.nodes, BasePort: cfg.basePort,
		Runtime: localcluster.Runtime(cfg.runtime), KubeVersion: cfg.kube, Logf: progress.step})
	if errors.Is(err, localcluster.ErrPortInUse) {
		return fmt.Errorf("%w\nchoose free ports with kvmount up --base-port PORT (now %d; the environment uses PORT to PORT+%d)", err, cfg.basePort, 100+2)
	}
	if err != nil {
		return err
	}
	progress.close()
	printEnv(env, cfg.dir, time.Since(start))
	<-ctx.Done()
	fmt.Println("\nstopping: ending every component and unmounting pod volumes ...")
	if err := env.Stop(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	fmt.Println("stopped; state kept in", cfg.dir)
	return nil
}

func printEnv(env *localenv.Env, dir string, took time.Duration) {
	fmt.Printf("\nkvmount is up in %s: %d node(s) Ready, the driver and the Azure provider on each.\n", took.Round(100*time.Millisecond), len(env.Nodes))
	fmt.Printf("  kubeconfig:  export KUBECONFIG=%s\n", env.Cluster.KubeconfigPath)
	fmt.Printf("  azsim:       export AZSIM_DATA_DIR=%s\n", env.AzsimDir)
	if env.Cluster.Runtime() == localcluster.RuntimeContainerd {
		fmt.Printf("  network:     its own namespace; reach it with kvmount run (KUBECONFIG and AZSIM_DATA_DIR set, bin/ on PATH):\n")
		fmt.Printf("  try:         sudo kvmount run --dir %s -- kubectl get pods -A\n", dir)
		fmt.Printf("               sudo kvmount run --dir %s -- azsim keyvault create -n my-kv -g %s\n", dir, localenv.ResourceGroup)
	} else {
		fmt.Printf("  try:         kubectl --kubeconfig %s get nodes\n", env.Cluster.KubeconfigPath)
		fmt.Printf("               azsim keyvault create -n my-kv -g %s\n", localenv.ResourceGroup)
	}
	fmt.Printf("  azsim CA:    %s\n", filepath.Join(env.AzsimDir, "ca.crt"))
	fmt.Printf("  tenant:      %s   (the SecretProviderClass tenantId)\n", env.TenantID)
	fmt.Printf("  AKS:         azsim aks show -g %s -n %s\n", localenv.ResourceGroup, localenv.ClusterName)
	fmt.Printf("  pod files:   sudo kvmount files <namespace>/<pod> --dir %s\n", dir)
	fmt.Printf("  logs:        %s and %s", filepath.Join(env.Cluster.Dir(), "logs"), filepath.Join(dir, "logs"))
	if env.Cluster.Runtime() == localcluster.RuntimeContainerd {
		fmt.Printf("; containers' in %s", filepath.Join(env.Cluster.Dir(), "n", "*", "pod-logs"))
	}
	fmt.Println()
	fmt.Println("Press Ctrl-C to stop.")
}

// ensureBins finds the binaries, building the Kubernetes ones (with their
// build output shown) when they are missing.
func ensureBins(ctx context.Context, p *progress) (string, error) {
	binDir, err := localcluster.FindBinDir()
	if err != nil {
		return "", err
	}
	for _, b := range []string{"azsim", "provider-azure", "secrets-store-csi-driver"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return "", fmt.Errorf("%s missing in %s: run `make build`", b, binDir)
		}
	}
	if len(localcluster.MissingBinaries(binDir)) == 0 {
		return binDir, nil
	}
	root, err := localcluster.RepoRoot()
	if err != nil {
		return "", fmt.Errorf("cluster binaries missing in %s and no source tree to build them from: run `make cluster-bins` in the kvmount checkout", binDir)
	}
	p.step("building the Kubernetes binaries into %s (first time only, a few minutes)", binDir)
	cmd := exec.CommandContext(ctx, filepath.Join(root, "tools", "cluster", "build.sh"), binDir)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build cluster binaries: %w", err)
	}
	return binDir, nil
}

// progress prints each start-up step with the time since start, and a
// "still …" line every few seconds while a step takes long, so the terminal
// is never silent for minutes.
type progress struct {
	out   io.Writer
	start time.Time

	mu      sync.Mutex // guards current, since and done
	current string
	since   time.Time
	done    chan struct{}
}

func newProgress(out io.Writer) *progress {
	p := &progress{out: out, start: time.Now(), done: make(chan struct{})}
	go p.tick()
	return p
}

func (p *progress) step(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current, p.since = fmt.Sprintf(format, args...), time.Now()
	fmt.Fprintf(p.out, "[%5.1fs] %s\n", time.Since(p.start).Seconds(), p.current)
}

func (p *progress) tick() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.mu.Lock()
			if p.current != "" && time.Since(p.since) >= 5*time.Second {
				fmt.Fprintf(p.out, "[%5.1fs]   still %s (%s)\n", time.Since(p.start).Seconds(), p.current, time.Since(p.since).Round(time.Second))
			}
			p.mu.Unlock()
		}
	}
}

func (p *progress) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
	default:
		close(p.done)
	}
}
