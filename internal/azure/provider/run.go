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
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"kvmount.dev/kvmount/internal/azure/config"
	"kvmount.dev/kvmount/internal/azure/identity"
	"kvmount.dev/kvmount/internal/azure/identitybinding"
	"kvmount.dev/kvmount/internal/azure/keyvault"
	"kvmount.dev/kvmount/internal/epoch"
	"kvmount.dev/kvmount/internal/events"
	"kvmount.dev/kvmount/internal/httpclient"
	"kvmount.dev/kvmount/internal/serve"
	"kvmount.dev/kvmount/internal/socket"
	"kvmount.dev/kvmount/internal/version"
)

// RunConfig is the provider process's configuration, from its flags.
type RunConfig struct {
	Endpoint string
	// HealthAddr serves HealthPath (empty: none); a request dials the
	// provider's own socket and asks its gRPC health service, within
	// HealthTimeout, as upstream's /healthz does.
	HealthAddr, HealthPath string
	HealthTimeout          time.Duration
	MetricsAddr            string
	// PProfPort, when set, serves pprof on localhost.
	PProfPort               int
	CloudName, CloudEnvFile string
	// UserAgent is appended to the SDK's User-Agent (--custom-user-agent).
	UserAgent string
	// TokenProxyURL and SNIName reach the AKS token proxy of identity
	// binding (--token-proxy-url, --sni-name).
	TokenProxyURL, SNIName    string
	NMIEndpoint, IMDSEndpoint string
	CAFiles                   []string
	// HostOverrides are SUFFIX=HOST:PORT values.
	HostOverrides     []string
	SeparateCertKey   bool
	ConstructPEMChain bool
	// OrderPEMSecrets rebuilds PEM-backed certificate secrets too.
	OrderPEMSecrets bool
	// CacheTTL is the node cache's epoch, the driver's rotation poll
	// interval; NodeName sets the epochs' phase as the driver's --nodeid
	// does.
	CacheTTL     time.Duration
	NodeName     string
	PerVault     int
	MountTimeout time.Duration
	// Kubeconfig reaches the API server for Events on pods; empty: the
	// in-cluster configuration if there is one, else Events are not
	// recorded (warnings are still logged).
	Kubeconfig string
	// NoEvents logs warnings only (beside the SecretSync controller, the
	// mount's pod is the controller's, not one a user looks at).
	NoEvents bool
	// Now is the fetcher's clock (tests move it across epochs); nil is
	// time.Now.
	Now func() time.Time
}

// RunWithLogger serves the provider until ctx ends, then stops gracefully:
// Mounts in progress finish (for at most the mount timeout) before the
// socket closes.
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
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(srv.opts.Metrics.interceptor, serve.Recover(log)))
	v1alpha1.RegisterCSIDriverProviderServer(g, srv)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	log.Info("provider-azure serving", "endpoint", rc.Endpoint, "version", version.Version)

	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return g.Serve(lis) })
	for _, h := range httpServers(rc, reg) {
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
	local, err := httpclient.NewTransport(httpclient.Options{CAFiles: rc.CAFiles, Overrides: overrides, NoProxy: true})
	if err != nil {
		return nil, nil, nil, err
	}
	var metrics *Metrics
	observe := func(o config.Object, err error, d time.Duration) { metrics.ObserveKeyVault(o, err, d) }
	fetcher := keyvault.New(keyvault.Options{HTTPClient: client, Epochs: epoch.ForNode(rc.NodeName, rc.CacheTTL), PerVault: rc.PerVault,
		SeparateCertKey: rc.SeparateCertKey, KeepPEMOrder: !rc.ConstructPEMChain, OrderPEMSecrets: rc.OrderPEMSecrets, UserAgent: rc.UserAgent, Observe: observe, Now: rc.Now})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics = NewMetrics(reg, fetcher)
	kube := kubeConfig(rc, log)
	recorder, err := eventRecorder(rc, kube, log)
	if err != nil {
		return nil, nil, nil, err
	}
	srv := New(Options{
		Events:   recorder,
		Defaults: config.Defaults{CloudName: rc.CloudName, CloudEnvFile: rc.CloudEnvFile},
		Identities: identity.NewSource(identity.Options{NMIEndpoint: rc.NMIEndpoint, IMDSEndpoint: rc.IMDSEndpoint,
			HTTPClient: client, LocalHTTPClient: &http.Client{Transport: local}, TokenProxy: tokenProxy(rc, kube),
			Epochs: epoch.ForNode(rc.NodeName, rc.CacheTTL), Now: rc.Now}),
		Fetcher:      fetcher,
		Logger:       log,
		Metrics:      metrics,
		MountTimeout: rc.MountTimeout,
	})
	return srv, reg, func() { tr.CloseIdleConnections(); local.CloseIdleConnections() }, nil
}

// httpServers are the health endpoint, /metrics and pprof, on their own
// addresses when set.
func httpServers(rc RunConfig, reg *prometheus.Registry) []*http.Server {
	var out []*http.Server
	if rc.HealthAddr != "" {
		path := rc.HealthPath
		if path == "" {
			path = "/healthz"
		}
		mux := http.NewServeMux()
		mux.HandleFunc(path, healthz(rc.Endpoint, rc.HealthTimeout))
		out = append(out, &http.Server{Addr: rc.HealthAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second})
	}
	if rc.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		out = append(out, &http.Server{Addr: rc.MetricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second})
	}
	if rc.PProfPort != 0 {
		out = append(out, serve.PProf(rc.PProfPort))
	}
	return out
}

// healthz answers as upstream's does: it dials the provider's own socket
// and asks its gRPC health service within timeout, so it fails when the
// socket the driver uses does (deleted, wedged, shutting down).
func healthz(endpoint string, timeout time.Duration) http.HandlerFunc {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		path, err := socket.Path(endpoint)
		if err == nil {
			var conn *grpc.ClientConn
			if conn, err = grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
				defer conn.Close()
				var resp *healthpb.HealthCheckResponse
				resp, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
				if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					err = fmt.Errorf("status %s", resp.GetStatus())
				}
			}
		}
		if err != nil {
			http.Error(w, "not serving: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
}

// kubeAccess is the API server as --kubeconfig or the pod's service
// account reach it: cfg nil when neither is there, err when --kubeconfig is
// broken.
type kubeAccess struct {
	cfg *rest.Config
	err error
}

func kubeConfig(rc RunConfig, log *slog.Logger) kubeAccess {
	if rc.Kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", rc.Kubeconfig)
		if err != nil {
			return kubeAccess{err: fmt.Errorf("--kubeconfig: %w", err)}
		}
		return kubeAccess{cfg: cfg}
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		log.Info("no Kubernetes API access (no --kubeconfig, not in a cluster): SecretProviderClass warnings are logged, not recorded as pod Events")
		return kubeAccess{}
	}
	return kubeAccess{cfg: cfg}
}

// tokenProxy is AKS's token proxy for identity binding: --token-proxy-url
// (default the API server), --sni-name (default computed from the API
// server's certificate), trusted with the cluster's CA as it rotates.
func tokenProxy(rc RunConfig, kube kubeAccess) *identitybinding.Proxy {
	cfg := identitybinding.Config{ProxyURL: rc.TokenProxyURL, SNIName: rc.SNIName}
	if kube.cfg != nil {
		cfg.APIServer = kube.cfg.Host
		// A CA file (in a pod: the service account's ca.crt, which kubelet
		// rotates) is read again when it changes.
		cfg.CAData, cfg.CAFile = kube.cfg.CAData, kube.cfg.CAFile
		if len(cfg.CAData) > 0 {
			cfg.CAFile = ""
		}
	}
	return identitybinding.New(cfg)
}

// eventRecorder records Events as the provider, through --kubeconfig or the
// pod's service account. The upstream provider has no API access: in its
// DaemonSet, warnings are logged only.
func eventRecorder(rc RunConfig, kube kubeAccess, log *slog.Logger) (*events.Recorder, error) {
	if kube.err != nil {
		return nil, kube.err
	}
	if kube.cfg == nil || rc.NoEvents {
		return nil, nil
	}
	cfg := rest.CopyConfig(kube.cfg)
	cfg.QPS, cfg.Burst = 20, 40
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return events.New(events.Config{Dynamic: dyn, Component: "csi-secrets-store-provider-azure", Instance: rc.NodeName, Now: rc.Now, Logger: log}), nil
}
