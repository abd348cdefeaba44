package csi

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the driver's Prometheus metrics with upstream's names, label
// sets and histogram buckets, so that dashboards keep working, plus
// kvmount's publish and unpublish durations. Every label value is bounded
// (provider names, gRPC codes, true/false, the OS), never a message or a
// pod name.
type Metrics struct {
	publishes, publishErrors, unpublishes, unpublishErrors *prometheus.CounterVec
	rotations, rotationErrors, syncs, syncErrors           *prometheus.CounterVec
	rotationDuration, syncDuration                         *prometheus.HistogramVec
	publishDuration, unpublishDuration                     *prometheus.HistogramVec
	// kvmount's: refreshes by what triggered them, and how long a change
	// took from Key Vault to the files.
	refreshes     *prometheus.CounterVec
	changeToFiles *prometheus.HistogramVec
}

// osType is the os_type label upstream puts on every metric.
var osType = runtime.GOOS

// upstreamBuckets are upstream's: 11 exponential buckets from 0.1 s to 2 s.
var upstreamBuckets = prometheus.ExponentialBucketsRange(0.1, 2, 11)

// NewMetrics registers the metrics on reg (nil: not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	c := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append([]string{"os_type"}, labels...))
	}
	h := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, append([]string{"os_type"}, labels...))
	}
	kvmBuckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
	m := &Metrics{
		publishes:         c("node_publish_total", "Total number of node publish calls", "provider"),
		publishErrors:     c("node_publish_error_total", "Total number of node publish calls with error", "provider", "error_type"),
		unpublishes:       c("node_unpublish_total", "Total number of node unpublish calls"),
		unpublishErrors:   c("node_unpublish_error_total", "Total number of node unpublish calls with error"),
		rotations:         c("rotation_reconcile_total", "Total number of rotation reconciles", "provider", "rotated"),
		rotationErrors:    c("rotation_reconcile_error_total", "Total number of rotation reconciles with error", "provider", "rotated", "error_type"),
		syncs:             c("sync_k8s_secret_total", "Total number of k8s secrets synced", "provider"),
		syncErrors:        c("sync_k8s_secret_error_total", "Total number of k8s secret syncs that failed (kvmount)", "provider"),
		rotationDuration:  h("rotation_reconcile_duration_sec", "Distribution of how long it took to rotate secrets-store content for pods", upstreamBuckets),
		syncDuration:      h("k8s_secret_duration_sec", "Distribution of how long it took to sync k8s secret", upstreamBuckets),
		publishDuration:   h("node_publish_duration_seconds", "NodePublishVolume duration, provider included (kvmount)", kvmBuckets, "provider"),
		unpublishDuration: h("node_unpublish_duration_seconds", "NodeUnpublishVolume duration (kvmount)", kvmBuckets),
		refreshes: c("kvmount_refreshes_total", "Refreshes of mounted volumes by trigger (poll: the rotation poll; event: a change Key Vault announced; request: a user asked) and result (changed, unchanged, error); poll refreshes that changed files are changes no event brought (kvmount)",
			"trigger", "result"),
		changeToFiles: h("kvmount_change_to_files_seconds", "Time from a change in Key Vault (its event's time) to the new files in a volume (kvmount)",
			[]float64{.1, .25, .5, 1, 2, 5, 10, 30, 60, 120, 300}),
	}
	// Metrics whose labels are known up front exist from the start, at
	// zero (upstream's appear only after their first event, #821).
	m.unpublishes.WithLabelValues(osType)
	m.unpublishErrors.WithLabelValues(osType)
	m.rotationDuration.WithLabelValues(osType)
	m.syncDuration.WithLabelValues(osType)
	m.unpublishDuration.WithLabelValues(osType)
	m.changeToFiles.WithLabelValues(osType)
	for _, t := range []string{triggerPoll, triggerEvent, triggerRequest} {
		for _, r := range []string{"changed", "unchanged", "error"} {
			m.refreshes.WithLabelValues(osType, t, r)
		}
	}
	if reg != nil {
		reg.MustRegister(m.publishes, m.publishErrors, m.unpublishes, m.unpublishErrors, m.rotations, m.rotationErrors,
			m.syncs, m.syncErrors, m.rotationDuration, m.syncDuration, m.publishDuration, m.unpublishDuration, m.refreshes, m.changeToFiles)
	}
	return m
}

func (m *Metrics) publish(provider string, d time.Duration) {
	m.publishes.WithLabelValues(osType, provider).Inc()
	m.publishDuration.WithLabelValues(osType, provider).Observe(d.Seconds())
}

func (m *Metrics) publishError(provider, code string) {
	m.publishErrors.WithLabelValues(osType, provider, code).Inc()
}

func (m *Metrics) unpublish(ok bool, d time.Duration) {
	if ok {
		m.unpublishes.WithLabelValues(osType).Inc()
	} else {
		m.unpublishErrors.WithLabelValues(osType).Inc()
	}
	m.unpublishDuration.WithLabelValues(osType).Observe(d.Seconds())
}

// rotation counts a refresh that reached the provider; errCode is empty
// for a success.
func (m *Metrics) rotation(provider string, rotated bool, errCode string, d time.Duration) {
	r := "false"
	if rotated {
		r = "true"
	}
	if errCode != "" {
		m.rotationErrors.WithLabelValues(osType, provider, r, errCode).Inc()
	} else {
		m.rotations.WithLabelValues(osType, provider, r).Inc()
	}
	m.rotationDuration.WithLabelValues(osType).Observe(d.Seconds())
}

func (m *Metrics) sync(provider string, written int, ok bool, d time.Duration) {
	if written > 0 {
		m.syncs.WithLabelValues(osType, provider).Add(float64(written))
	}
	if !ok {
		m.syncErrors.WithLabelValues(osType, provider).Inc()
	}
	m.syncDuration.WithLabelValues(osType).Observe(d.Seconds())
}

// What triggered a refresh.
const (
	triggerPoll    = "poll"
	triggerEvent   = "event"
	triggerRequest = "request"
)

// refreshed counts one refresh of a mounted volume.
func (m *Metrics) refreshed(trigger string, changed, failed bool) {
	r := "unchanged"
	switch {
	case failed:
		r = "error"
	case changed:
		r = "changed"
	}
	m.refreshes.WithLabelValues(osType, trigger, r).Inc()
}

// changeLanded observes how long a change took to reach the files.
func (m *Metrics) changeLanded(d time.Duration) {
	m.changeToFiles.WithLabelValues(osType).Observe(max(d, 0).Seconds())
}
