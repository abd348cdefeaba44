// Command secrets-store-csi-driver is the Secrets Store CSI node plugin:
// one container per node that registers itself with kubelet, mounts a tmpfs
// per pod volume, and fills it from the SecretProviderClass's provider. It
// takes every flag of the upstream driver (v1.6) with the same meaning, so
// upstream's DaemonSet runs it unchanged.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kvmount.dev/kvmount/internal/csi"
	"kvmount.dev/kvmount/internal/kubemetrics"
	"kvmount.dev/kvmount/internal/logs"
	"kvmount.dev/kvmount/internal/providers"
	"kvmount.dev/kvmount/internal/serve"
	"kvmount.dev/kvmount/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	logs.Flush()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "secrets-store-csi-driver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	// The driver's live heap is a few MiB; a soft limit makes the
	// collector and scavenger keep the node footprint near it instead of
	// letting garbage double it. GOMEMLIMIT in the environment wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(24 << 20)
	}
	c, err := parse(args, os.Stdout)
	if err != nil || c.version {
		if c.version {
			fmt.Println(version.JSON())
		}
		return err
	}
	log, err := c.logs.Logger()
	if err != nil {
		return err
	}
	c.logSettings(log)
	rc, err := restConfig(c.kubeconfig)
	if err != nil {
		return err
	}
	// The driver's requests are few per pod (its status object; classes
	// come from a watch): set deliberately rather than client-go's 5/s,
	// which made a 110-pod storm wait tens of seconds on the client.
	rc.QPS, rc.Burst = float32(c.qps), c.burst
	rc.UserAgent = "secrets-store-csi-driver/" + version.Version + " (kvmount)"
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	kubemetrics.Register(reg)
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	provs := providers.New(c.providerDirs(), c.maxRecvMsg)
	defer provs.Close()
	d := csi.New(csi.Config{DriverName: c.driverName, NodeID: c.nodeID, Providers: provs, Dynamic: dyn, Classes: csi.NewClasses(dyn),
		RotationPollInterval: c.pollInterval, Rotation: c.rotation, ProviderTimeout: c.providerTimeout, MaxPayload: c.maxRecvMsg,
		Logger: log, Metrics: csi.NewMetrics(reg), Version: version.Version})
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		return d.Serve(ctx, csi.ServeConfig{Endpoint: c.endpoint, RegistrationDir: c.registrationDir(log), HealthAddr: c.healthAddr,
			MetricsAddr: c.metricsAddr, Registry: reg})
	})
	if c.healthCheck {
		eg.Go(func() error { provs.HealthCheck(ctx, c.healthInterval, log); return nil })
	}
	if c.pprof {
		eg.Go(func() error { return serve.HTTP(ctx, serve.PProf(c.pprofPort)) })
	}
	return eg.Wait()
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
