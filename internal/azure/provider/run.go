package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"kvmount.dev/kvmount/internal/azure/config"
	"kvmount.dev/kvmount/internal/azure/identity"
	"kvmount.dev/kvmount/internal/azure/keyvault"
	"kvmount.dev/kvmount/internal/epoch"
	"kvmount.dev/kvmount/internal/httpclient"
	"kvmount.dev/kvmount/internal/serve"
	"kvmount.dev/kvmount/internal/socket"
)

// RunConfig is the provider process's configuration, from its flags.
type RunConfig struct {
	Endpoint, HealthAddr, MetricsAddr string
	CloudName, CloudEnvFile           string
	NMIEndpoint, IMDSEndpoint         string
	CAFiles                           []string
	// HostOverrides are SUFFIX=HOST:PORT values.
	HostOverrides     []string
	SeparateCertKey   bool
	ConstructPEMChain bool
	// CacheTTL is the node cache's epoch, the driver's rotation poll
	// interval; NodeName sets the epochs' phase as the driver's --nodeid
	// does.
	CacheTTL        time.Duration
	NodeName        string
	PerVault        int
	MountTimeout    time.Duration
	JSONLogs, Debug bool
	// Now is the fetcher's clock (tests move it across epochs); nil is
	// time.Now.
	Now func() time.Time
}

// Run serves the provider until ctx ends, then stops gracefully: Mounts in
// progress finish (for at most the mount timeout) before the socket closes.
func Run(ctx context.Context, rc RunConfig) error {
	return RunWithLogger(ctx, rc, logger(rc))
}

// RunWithLogger is Run with the given logger.
func RunWithLogger(ctx context.Context, rc RunConfig, log *slog.Logger) error {
	srv, reg, closeIdle, err := build(rc, log)
	if err != nil {
		return err
	}
	defer closeIdle()
	lis, err := socket.Listen(rc.Endpoint, 0o700)
	if err != nil {
		return err
	}
	g := grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(g, srv)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	log.Info("provider-azure serving", "endpoint", rc.Endpoint, "version", Version)

	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return g.Serve(lis) })
	for _, h := range httpServers(rc, reg, hs) {
		eg.Go(func() error { return serve.HTTP(ctx, h) })
	}
	eg.Go(func() error {
		<-ctx.Done()
		hs.Shutdown()
		stopped := make(chan struct{})
		go func() { g.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(rc.MountTimeout):
			g.Stop()
		}
		return nil
	})
	err = eg.Wait()
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}

// build wires the server from its configuration.
func build(rc RunConfig, log *slog.Logger) (*Server, *prometheus.Registry, func(), error) {
	overrides := map[string]string{}
	for _, o := range rc.HostOverrides {
		suffix, addr, err := httpclient.ParseOverride(o)
		if err != nil {
			return nil, nil, nil, err
		}
		overrides[suffix] = addr
	}
	tr, err := httpclient.NewTransport(httpclient.Options{CAFiles: rc.CAFiles, Overrides: overrides})
	if err != nil {
		return nil, nil, nil, err
	}
	client := &http.Client{Transport: tr}
	fetcher := keyvault.New(keyvault.Options{HTTPClient: client, Epochs: epoch.ForNode(rc.NodeName, rc.CacheTTL), PerVault: rc.PerVault,
		SeparateCertKey: rc.SeparateCertKey, KeepPEMOrder: !rc.ConstructPEMChain, Now: rc.Now})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv := New(Options{
		Defaults:     config.Defaults{CloudName: rc.CloudName, CloudEnvFile: rc.CloudEnvFile},
		Identities:   identity.NewSource(identity.Options{NMIEndpoint: rc.NMIEndpoint, IMDSEndpoint: rc.IMDSEndpoint, HTTPClient: client}),
		Fetcher:      fetcher,
		Logger:       log,
		Metrics:      NewMetrics(reg, fetcher),
		MountTimeout: rc.MountTimeout,
	})
	return srv, reg, tr.CloseIdleConnections, nil
}

func logger(rc RunConfig) *slog.Logger { return serve.Logger(rc.JSONLogs, rc.Debug) }

// httpServers are /healthz (the gRPC health status, so it fails while
// shutting down) and /metrics, on their own addresses when set.
func httpServers(rc RunConfig, reg *prometheus.Registry, hs *health.Server) []*http.Server {
	var out []*http.Server
	if rc.HealthAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			resp, err := hs.Check(r.Context(), &healthpb.HealthCheckRequest{})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				http.Error(w, "not serving", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		out = append(out, &http.Server{Addr: rc.HealthAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second})
	}
	if rc.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		out = append(out, &http.Server{Addr: rc.MetricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second})
	}
	return out
}
