// Command secrets-store-csi-driver is the Secrets Store CSI node plugin:
// one container per node that registers itself with kubelet, mounts a tmpfs
// per pod volume, and fills it from the SecretProviderClass's provider.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kvmount.dev/kvmount/internal/csi"
	"kvmount.dev/kvmount/internal/providers"
	"kvmount.dev/kvmount/internal/serve"
)

var version = "v0.1.0"

// config is what the flags say.
type config struct {
	endpoint, driverName, nodeID, providerDir, extraProviderDirs string
	registrationDir, healthAddr, metricsAddr, kubeconfig         string
	rotation, jsonLogs, debug, version                           bool
	pollInterval, providerTimeout                                time.Duration
	maxRecvMsg, burst                                            int
	qps                                                          float64
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "secrets-store-csi-driver:", err)
		os.Exit(1)
	}
}

func parse(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("secrets-store-csi-driver", flag.ContinueOnError)
	fs.StringVar(&c.endpoint, "endpoint", "unix:///csi/csi.sock", "CSI socket kubelet calls")
	fs.StringVar(&c.driverName, "drivername", csi.DriverName, "CSI driver name")
	fs.StringVar(&c.nodeID, "nodeid", os.Getenv("KUBE_NODE_NAME"), "this node's name (default $KUBE_NODE_NAME)")
	fs.StringVar(&c.providerDir, "provider-volume", "/var/run/secrets-store-csi-providers", "directory of provider sockets")
	fs.StringVar(&c.extraProviderDirs, "additional-provider-volume-paths", "/etc/kubernetes/secrets-store-csi-providers", "more provider socket directories, comma-separated, searched first")
	fs.StringVar(&c.registrationDir, "registration-dir", "/var/lib/kubelet/plugins_registry", "kubelet's plugin registration directory (empty: do not register)")
	fs.StringVar(&c.healthAddr, "healthz-addr", ":9808", "address of /healthz (empty disables)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", ":8095", "address of Prometheus /metrics (empty disables)")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster)")
	fs.BoolVar(&c.rotation, "enable-secret-rotation", false, "refresh mounted volumes on kubelet's republish, once per --rotation-poll-interval")
	fs.DurationVar(&c.pollInterval, "rotation-poll-interval", 2*time.Minute, "rotation epoch: each mounted volume is refreshed once per interval")
	fs.DurationVar(&c.providerTimeout, "provider-timeout", 100*time.Second, "limit of one provider Mount (under kubelet's 2m)")
	fs.IntVar(&c.maxRecvMsg, "max-call-recv-msg-size", 4<<20, "largest provider response accepted, bytes")
	fs.Float64Var(&c.qps, "kube-api-qps", 50, "requests per second to the API server (its status objects, events, synced Secrets)")
	fs.IntVar(&c.burst, "kube-api-burst", 100, "burst of requests to the API server")
	fs.BoolVar(&c.jsonLogs, "log-format-json", false, "log JSON")
	fs.BoolVar(&c.debug, "v", false, "debug logging (never secrets)")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if !c.version && c.nodeID == "" {
		return c, fmt.Errorf("--nodeid is required (or set KUBE_NODE_NAME from spec.nodeName)")
	}
	return c, nil
}

func run(ctx context.Context, args []string) error {
	// The driver's live heap is a few MiB; a soft limit makes the
	// collector and scavenger keep the node footprint near it instead of
	// letting garbage double it. GOMEMLIMIT in the environment wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(24 << 20)
	}
	c, err := parse(args)
	if err != nil || c.version {
		if c.version {
			fmt.Printf("{\"version\":%q}\n", version)
		}
		return err
	}
	rc, err := restConfig(c.kubeconfig)
	if err != nil {
		return err
	}
	// The driver's requests are few per pod (its status object; classes
	// come from a watch): set deliberately rather than client-go's 5/s,
	// which made a 110-pod storm wait tens of seconds on the client.
	rc.QPS, rc.Burst = float32(c.qps), c.burst
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var dirs []string
	for _, d := range strings.Split(c.extraProviderDirs, ",") {
		if d = strings.TrimSpace(d); d != "" {
			dirs = append(dirs, d)
		}
	}
	provs := providers.New(append(dirs, c.providerDir), c.maxRecvMsg)
	defer provs.Close()
	d := csi.New(csi.Config{DriverName: c.driverName, NodeID: c.nodeID, Providers: provs, Dynamic: dyn, Classes: csi.NewClasses(dyn),
		RotationPollInterval: c.pollInterval, Rotation: c.rotation, ProviderTimeout: c.providerTimeout,
		Logger: logger(c), Metrics: csi.NewMetrics(reg), Version: version})
	return d.Serve(ctx, csi.ServeConfig{Endpoint: c.endpoint, RegistrationDir: c.registrationDir, HealthAddr: c.healthAddr, MetricsAddr: c.metricsAddr, Registry: reg})
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("not in a cluster and no --kubeconfig: %w", err)
	}
	return rc, nil
}

func logger(c config) *slog.Logger { return serve.Logger(c.jsonLogs, c.debug) }
