package provider

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kvmount.dev/kvmount/internal/azure/config"
	"kvmount.dev/kvmount/internal/azure/keyvault"
)

// Metrics are the provider's Prometheus metrics: upstream's
// keyvault_request and grpc_request duration histograms, with upstream's
// label names and buckets, so dashboards keep working, and kvmount's own
// counters. Label values are bounded where upstream's are not: error and
// grpc_message hold a short reason (an HTTP status and Key Vault error
// code, a kind of failure), never a free-form message.
type Metrics struct {
	keyvault, grpc *prometheus.HistogramVec
	mounts         *prometheus.CounterVec
	mountDurations *prometheus.HistogramVec
	// constantLabels are os_type, provider and service_name, as upstream
	// sets them on every metric.
	constantLabels []string
}

// upstreamBuckets are the upstream provider's histogram buckets, seconds.
var upstreamBuckets = []float64{0.1, 0.2, 0.3, 0.4, 0.5, 1, 1.5, 2, 2.5, 3, 5, 10, 15, 30}

// NewMetrics registers the provider's metrics, including the fetcher's
// counters, on reg.
func NewMetrics(reg prometheus.Registerer, f *keyvault.Fetcher) *Metrics {
	common := []string{"os_type", "provider", "service_name"}
	m := &Metrics{
		keyvault: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "keyvault_request", Help: "Distribution of how long it took to get from keyvault",
			Buckets: upstreamBuckets}, append(common, "object_type", "object_name", "error")),
		grpc: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "grpc_request", Help: "Distribution of how long it took for the gRPC requests",
			Buckets: upstreamBuckets}, append(common, "grpc_method", "grpc_code", "grpc_message")),
		mounts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kvmount_provider_mounts_total",
			Help: "Mount requests by gRPC result code."}, []string{"code"}),
		mountDurations: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kvmount_provider_mount_duration_seconds",
			Help: "Mount duration by gRPC result code.", Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"code"}),
		constantLabels: []string{runtime.GOOS, "azure", "csi-secrets-store-provider-azure"},
	}
	reg.MustRegister(m.keyvault, m.grpc, m.mounts, m.mountDurations,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kvmount_provider_keyvault_requests_total",
			Help: "Requests sent to Key Vault (object reads and version lists)."}, func() float64 { return float64(f.Stats.Requests.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kvmount_provider_cache_hits_total",
			Help: "Object reads served from the node cache."}, func() float64 { return float64(f.Stats.CacheHits.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kvmount_provider_coalesced_reads_total",
			Help: "Object reads that joined an identical read in flight."}, func() float64 { return float64(f.Stats.Coalesced.Load()) }),
	)
	return m
}

func (m *Metrics) observe(code codes.Code, d time.Duration) {
	m.mounts.WithLabelValues(code.String()).Inc()
	m.mountDurations.WithLabelValues(code.String()).Observe(d.Seconds())
}

// ObserveKeyVault records one Key Vault request (a keyvault.Options
// Observe hook).
func (m *Metrics) ObserveKeyVault(o config.Object, err error, d time.Duration) {
	labels := append(append([]string{}, m.constantLabels...), o.Type, o.Name, kvReason(err))
	m.keyvault.WithLabelValues(labels...).Observe(d.Seconds())
}

// kvReason is a Key Vault failure in a few bounded words: the HTTP status
// and Key Vault's error code, or the kind of transport failure.
func kvReason(err error) string {
	var re *azcore.ResponseError
	var te *keyvault.ThrottledError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &re):
		r := strconv.Itoa(re.StatusCode)
		if re.ErrorCode != "" {
			r += " " + re.ErrorCode
		} else {
			r += " " + http.StatusText(re.StatusCode)
		}
		return r
	case errors.As(err, &te):
		return "throttled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case isNetwork(err):
		return "network"
	}
	return "other"
}

// interceptor records every gRPC call in grpc_request but Version: the
// driver's health check (--provider-health-check) and kubelet's probes of
// /healthz call it every few seconds, and a dashboard's request rate would
// be theirs.
func (m *Metrics) interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if strings.HasSuffix(info.FullMethod, "/Version") {
		return h(ctx, req)
	}
	start := time.Now()
	resp, err := h(ctx, req)
	code := status.Code(err)
	labels := append(append([]string{}, m.constantLabels...), info.FullMethod, code.String(), grpcReason(code))
	m.grpc.WithLabelValues(labels...).Observe(time.Since(start).Seconds())
	return resp, err
}

// grpcReason is upstream's grpc_message, bounded: what kind of failure a
// code stands for in this provider.
func grpcReason(c codes.Code) string {
	switch c {
	case codes.OK:
		return ""
	case codes.InvalidArgument:
		return "invalid SecretProviderClass or object"
	case codes.Unauthenticated, codes.PermissionDenied, codes.FailedPrecondition:
		return "identity or access"
	case codes.NotFound:
		return "object not found"
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return "Key Vault or identity endpoint unavailable"
	}
	return "internal"
}
