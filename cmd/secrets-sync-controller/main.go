// Command secrets-sync-controller is kvmount's SecretSync controller: a
// Deployment that keeps each SecretSync's Secret filled from a secret store
// through the provider running beside it, without a pod. It takes upstream's
// sync controller's flags with their meaning.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/dynamic"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kvmount.dev/kvmount/internal/changefeed"
	"kvmount.dev/kvmount/internal/kubemetrics"
	"kvmount.dev/kvmount/internal/logs"
	"kvmount.dev/kvmount/internal/providers"
	"kvmount.dev/kvmount/internal/serve"
	"kvmount.dev/kvmount/internal/syncer"
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
		fmt.Fprintln(os.Stderr, "secrets-sync-controller:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	// The live heap is small (caches of SecretSyncs, classes and the
	// Secrets it owns); a soft limit keeps the collector from letting
	// garbage double the footprint. GOMEMLIMIT in the environment wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(40 << 20)
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
	rc, err := restConfig(c.kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = float32(c.qps), c.burst
	rc.UserAgent = "secrets-sync-controller/" + version.Version + " (kvmount)"
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	kubemetrics.Register(reg)
	kube, err := clients(rc)
	if err != nil {
		return err
	}
	provs := providers.New([]string{c.providerDir}, c.maxRecvMsg)
	defer provs.Close()
	ctrl := syncer.New(syncer.Config{Name: c.name, Namespace: c.namespace, PodName: c.podName, PodUID: c.podUID,
		Audiences: c.audienceList(), Providers: provs, ProviderTimeout: c.providerTimeout, PollInterval: c.poll,
		VaultQPS: c.vaultQPS, VaultBurst: c.vaultBurst, Workers: c.workers, PartialSync: c.partial, RepairDrift: c.repairDrift,
		LeaderElect: c.leaderElect, Leases: syncer.LeaseTimes{Duration: c.lease, RenewDeadline: c.renew, RetryPeriod: c.retry},
		Logger: log, Metrics: syncer.NewMetrics(reg)}, kube)
	log.Info("secrets-sync-controller starting", "version", version.Version, "providerDir", c.providerDir, "audiences", c.audienceList(),
		"rotationPollInterval", c.poll, "leaderElect", c.leaderElect, "controllerName", c.name)
	var sources []func(context.Context) error
	if c.events.enabled() {
		feed, err := changefeed.New(changefeed.Config{Dynamic: kube.Dynamic, Classes: ctrl.ClassInformer(), Logger: log, Metrics: changefeed.NewMetrics(reg)})
		if err != nil {
			return err
		}
		if sources, err = eventSources(c.events, feed, log); err != nil {
			return err
		}
	}
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return ctrl.Run(ctx) })
	for _, src := range sources {
		eg.Go(func() error { return src(ctx) })
	}
	for _, h := range httpServers(c, reg, ctrl) {
		eg.Go(func() error { return serve.HTTP(ctx, h) })
	}
	return eg.Wait()
}

func clients(rc *rest.Config) (syncer.Clients, error) {
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return syncer.Clients{}, err
	}
	core, err := corev1client.NewForConfig(rc)
	if err != nil {
		return syncer.Clients{}, err
	}
	leases, err := coordinationv1.NewForConfig(rc)
	if err != nil {
		return syncer.Clients{}, err
	}
	return syncer.Clients{Dynamic: dyn, Core: core, Leases: leases}, nil
}

// httpServers are /healthz and /readyz (ready once the caches are synced:
// a standby is ready too, so a rollout waits for warm caches) and /metrics.
func httpServers(c config, reg *prometheus.Registry, ctrl *syncer.Controller) []*http.Server {
	var out []*http.Server
	if c.healthAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if !ctrl.Synced() {
				http.Error(w, "caches not synced", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		out = append(out, &http.Server{Addr: c.healthAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second})
	}
	if c.metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		out = append(out, &http.Server{Addr: c.metricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second})
	}
	return out
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
