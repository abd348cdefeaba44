package provider

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"kvmount.dev/kvmount/internal/azure/keyvault"
)

// Metrics are the provider's Prometheus metrics. Labels are bounded: a
// gRPC code, never an error message or an object name.
type Metrics struct {
	mounts   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the provider's metrics, including the fetcher's
// counters, on reg.
func NewMetrics(reg prometheus.Registerer, f *keyvault.Fetcher) *Metrics {
	m := &Metrics{
		mounts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kvmount_provider_mounts_total",
			Help: "Mount requests by gRPC result code."}, []string{"code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kvmount_provider_mount_duration_seconds",
			Help: "Mount duration by gRPC result code.", Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"code"}),
	}
	reg.MustRegister(m.mounts, m.duration,
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
	m.duration.WithLabelValues(code.String()).Observe(d.Seconds())
}
