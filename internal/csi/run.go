package csi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"kvmount.dev/kvmount/internal/serve"
	"kvmount.dev/kvmount/internal/socket"
)

// ServeConfig says where the driver serves.
type ServeConfig struct {
	// Endpoint is the CSI socket kubelet calls (unix://…).
	Endpoint string
	// RegistrationDir is kubelet's plugins_registry; empty: no
	// registration.
	RegistrationDir string
	// HealthAddr and MetricsAddr serve /healthz and /metrics; empty: not
	// served. Registry holds the metrics.
	HealthAddr, MetricsAddr string
	Registry                *prometheus.Registry
}

// Serve runs the CSI services, kubelet registration, /healthz and /metrics
// until ctx ends, at once: the class cache fills in the background (see
// Classes), so kubelet can unmount pods and probe the driver while the API
// server is away. Mounts survive: stopping the driver never unmounts a
// pod's volume.
func (d *Driver) Serve(ctx context.Context, sc ServeConfig) error {
	d.cfg.Classes.Start(ctx)
	endpoint, registrationDir := sc.Endpoint, sc.RegistrationDir
	lis, err := socket.Listen(endpoint, 0o750)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(d.logCalls, serve.Recover(d.cfg.Logger)))
	csipb.RegisterIdentityServer(srv, &Identity{d: d})
	csipb.RegisterNodeServer(srv, &Node{d: d})
	servers := []*grpc.Server{srv}
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return srv.Serve(lis) })
	if registrationDir != "" {
		path, _ := socket.Path(endpoint)
		rl, err := socket.Listen("unix://"+filepath.Join(registrationDir, d.cfg.DriverName+"-reg.sock"), 0o750)
		if err != nil {
			return err
		}
		rs := grpc.NewServer()
		registerapi.RegisterRegistrationServer(rs, &registration{name: d.cfg.DriverName, endpoint: path, d: d})
		servers = append(servers, rs)
		eg.Go(func() error { return rs.Serve(rl) })
	}
	for _, h := range d.httpServers(sc.HealthAddr, sc.MetricsAddr, sc.Registry) {
		eg.Go(func() error { return serve.HTTP(ctx, h) })
	}
	eg.Go(func() error {
		<-ctx.Done()
		for _, s := range servers {
			stopWithin(s, 10*time.Second)
		}
		return nil
	})
	err = eg.Wait()
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}

func stopWithin(s *grpc.Server, d time.Duration) {
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		s.Stop()
	}
}

// logCalls logs each CSI call's method, code and duration; never the
// request, which carries secrets and service-account tokens.
func (d *Driver) logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	d.cfg.Logger.Debug("csi call", "method", info.FullMethod, "code", codeOf(err), "duration", time.Since(start).Round(time.Microsecond))
	return resp, err
}

func (d *Driver) httpServers(healthAddr, metricsAddr string, reg *prometheus.Registry) []*http.Server {
	var out []*http.Server
	if healthAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
		out = append(out, &http.Server{Addr: healthAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second})
	}
	if metricsAddr != "" && reg != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		out = append(out, &http.Server{Addr: metricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second})
	}
	return out
}
