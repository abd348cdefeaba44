package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"kvmount.dev/kvmount/internal/csi"
	"kvmount.dev/kvmount/internal/logs"
)

// config is what the flags say: upstream's (v1.6 cmd/secrets-store-csi-driver)
// with their meaning, then kvmount's own.
type config struct {
	endpoint, driverName, nodeID, providerDir, extraProviderDirs string
	metricsAddr, metricsBackend, kubeconfig                      string
	rotation, healthCheck, pprof, version                        bool
	pollInterval, healthInterval                                 time.Duration
	maxRecvMsg, pprofPort                                        int
	logs                                                         *logs.Options

	// kvmount's own.
	registration, healthAddr string
	providerTimeout          time.Duration
	qps                      float64
	burst                    int
}

const usageHeader = `secrets-store-csi-driver: the Secrets Store CSI node plugin (kvmount).

It takes the upstream driver's flags with their meaning, so upstream's
DaemonSet runs it unchanged, and registers itself with kubelet and serves
/healthz itself (no node-driver-registrar or livenessprobe needed; with them
it defers to them).

Flags:
`

func parse(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("secrets-store-csi-driver", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { fmt.Fprint(out, usageHeader); fs.PrintDefaults() }
	c.logs = logs.AddFlags(fs)
	fs.StringVar(&c.endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint kubelet calls (unix:///path, or upstream's unix://path)")
	fs.StringVar(&c.driverName, "drivername", csi.DriverName, "name of the driver")
	fs.StringVar(&c.nodeID, "nodeid", os.Getenv("KUBE_NODE_NAME"), "node id: this node's name (default $KUBE_NODE_NAME)")
	fs.StringVar(&c.providerDir, "provider-volume", "/var/run/secrets-store-csi-providers", "volume path for provider sockets (<dir>/<provider>.sock)")
	fs.StringVar(&c.extraProviderDirs, "additional-provider-volume-paths", "/etc/kubernetes/secrets-store-csi-providers", "comma-separated additional paths to find providers in, searched first")
	fs.StringVar(&c.metricsAddr, "metrics-addr", ":8095", "the address the Prometheus /metrics endpoint binds to (empty disables)")
	fs.StringVar(&c.metricsBackend, "metrics-backend", "Prometheus", "backend used for metrics: Prometheus (the only one, as upstream)")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "path to a kubeconfig; only required out of cluster")
	fs.BoolVar(&c.rotation, "enable-secret-rotation", false, "refresh mounted volumes on kubelet's republish, once per --rotation-poll-interval")
	fs.DurationVar(&c.pollInterval, "rotation-poll-interval", 2*time.Minute, "secret rotation poll interval: each mounted volume is refreshed once per interval")
	fs.BoolVar(&c.healthCheck, "provider-health-check", false, "check the providers' health (a Version call to each provider socket) every --provider-health-check-interval and log failures")
	fs.DurationVar(&c.healthInterval, "provider-health-check-interval", 2*time.Minute, "provider health check interval")
	fs.IntVar(&c.maxRecvMsg, "max-call-recv-msg-size", 4<<20, "maximum size in bytes of a provider's gRPC response")
	fs.BoolVar(&c.pprof, "enable-pprof", false, "serve pprof profiling on localhost:--pprof-port")
	fs.IntVar(&c.pprofPort, "pprof-port", 6065, "port for pprof profiling")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	fs.StringVar(&c.registration, "registration-dir", "/var/lib/kubelet/plugins_registry", "kvmount: kubelet's plugin registration directory; registration is skipped (a node-driver-registrar sidecar registers) when it does not exist, and off when empty")
	fs.StringVar(&c.healthAddr, "healthz-addr", "", "kvmount: address of the driver's own /healthz, e.g. :9808 (empty: none; upstream's livenessprobe sidecar serves it)")
	fs.DurationVar(&c.providerTimeout, "provider-timeout", 100*time.Second, "kvmount: limit of one provider Mount (under kubelet's 2m)")
	fs.Float64Var(&c.qps, "kube-api-qps", 50, "kvmount: requests per second to the API server (status objects, events, synced Secrets; classes come from a watch)")
	fs.IntVar(&c.burst, "kube-api-burst", 100, "kvmount: burst of requests to the API server")
	if err := fs.Parse(logs.NormalizeArgs(args)); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags are written --name=value)", fs.Arg(0))
	}
	if !strings.EqualFold(c.metricsBackend, "prometheus") {
		return c, fmt.Errorf("--metrics-backend %q: unsupported metrics backend (Prometheus is the only one, as upstream)", c.metricsBackend)
	}
	if !c.version && c.nodeID == "" {
		return c, fmt.Errorf("--nodeid is required (or set KUBE_NODE_NAME from spec.nodeName)")
	}
	return c, nil
}

// providerDirs are the additional paths, then --provider-volume, as
// upstream searches them.
func (c config) providerDirs() []string {
	var dirs []string
	for _, d := range strings.Split(c.extraProviderDirs, ",") {
		if d = strings.TrimSpace(d); d != "" {
			dirs = append(dirs, d)
		}
	}
	return append(dirs, c.providerDir)
}

// registrationDir is where to register with kubelet: in upstream's
// DaemonSet the directory is mounted into the registrar sidecar only, and
// the registrar registers the driver.
func (c config) registrationDir(log *slog.Logger) string {
	if c.registration == "" {
		return ""
	}
	if _, err := os.Stat(c.registration); err != nil {
		log.Info("kubelet's plugin registration directory is not mounted: assuming a node-driver-registrar sidecar registers the driver", "dir", c.registration)
		return ""
	}
	return c.registration
}

// logSettings says, once at start, how the driver will behave.
func (c config) logSettings(log *slog.Logger) {
	log.Info("secrets-store-csi-driver starting", "node", c.nodeID, "endpoint", c.endpoint, "rotation", c.rotation,
		"rotationPollInterval", c.pollInterval, "providerDirs", c.providerDirs())
}
