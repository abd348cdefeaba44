package syncer

import (
	"errors"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the controller's Prometheus metrics: upstream's names
// (rotation_reconcile_total, secrets_store_sync_duration_sec, with its
// successful and namespace labels) and kvmount's counters of what a sync
// cost. Label values are bounded: results, condition reasons, operations,
// policy names, namespaces.
type Metrics struct {
	reconciles                       *prometheus.CounterVec
	duration                         *prometheus.HistogramVec
	syncs, failures, writes, denials *prometheus.CounterVec
	providerCalls, statusWrites      prometheus.Counter
}

// NewMetrics registers the metrics on reg (nil: not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rotation_reconcile_total", Help: "Total number of SecretSync reconciles"}, []string{"successful", "namespace"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "secrets_store_sync_duration_sec", Help: "Distribution of how long it took to sync a SecretSync's Secret",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"successful", "namespace"}),
		syncs:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kvmount_secretsync_syncs_total", Help: "SecretSync syncs by result: created, updated, unchanged, failed."}, []string{"result"}),
		failures:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kvmount_secretsync_failures_total", Help: "Failed SecretSync syncs by condition reason."}, []string{"reason"}),
		writes:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kvmount_secretsync_secret_writes_total", Help: "Secret writes by operation (create, apply)."}, []string{"operation"}),
		denials:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kvmount_secretsync_admission_denials_total", Help: "Requests of the controller that a ValidatingAdmissionPolicy refused, by policy."}, []string{"policy"}),
		providerCalls: prometheus.NewCounter(prometheus.CounterOpts{Name: "kvmount_secretsync_provider_calls_total", Help: "Provider Mount calls (SecretSyncs asking the same share one)."}),
		statusWrites:  prometheus.NewCounter(prometheus.CounterOpts{Name: "kvmount_secretsync_status_writes_total", Help: "SecretSync status writes."}),
	}
	if reg != nil {
		reg.MustRegister(m.reconciles, m.duration, m.syncs, m.failures, m.writes, m.denials, m.providerCalls, m.statusWrites)
	}
	return m
}

func (m *Metrics) providerCall()         { m.providerCalls.Inc() }
func (m *Metrics) statusWrite()          { m.statusWrites.Inc() }
func (m *Metrics) secretWrite(op string) { m.writes.WithLabelValues(op).Inc() }

var policyRE = regexp.MustCompile(`ValidatingAdmissionPolicy '([a-z0-9.-]{1,253})'`)

// sync counts one sync.
func (m *Metrics) sync(namespace string, o outcome, err error, d time.Duration) {
	ok := strconv.FormatBool(err == nil)
	m.reconciles.WithLabelValues(ok, namespace).Inc()
	m.duration.WithLabelValues(ok, namespace).Observe(d.Seconds())
	var f *failure
	switch {
	case err != nil && errors.As(err, &f):
		m.syncs.WithLabelValues("failed").Inc()
		m.failures.WithLabelValues(f.reason).Inc()
		if p := policyRE.FindStringSubmatch(f.msg); p != nil {
			m.denials.WithLabelValues(p[1]).Inc()
		}
	case err != nil:
		m.syncs.WithLabelValues("failed").Inc()
		m.failures.WithLabelValues("ControllerSyncError").Inc()
	case o.created:
		m.syncs.WithLabelValues("created").Inc()
	case o.written:
		m.syncs.WithLabelValues("updated").Inc()
	default:
		m.syncs.WithLabelValues("unchanged").Inc()
	}
}
