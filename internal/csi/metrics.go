package csi

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the driver's Prometheus metrics, with upstream's names so
// that dashboards keep working; every label is bounded (provider names,
// gRPC codes), never a message or a pod name.
type Metrics struct {
	publishes, publishErrors, unpublishes, unpublishErrors *prometheus.CounterVec
	rotations, rotationErrors, syncs                       *prometheus.CounterVec
	duration                                               *prometheus.HistogramVec
}

// NewMetrics registers the metrics on reg (nil: not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	c := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &Metrics{
		publishes:       c("node_publish_total", "Successful NodePublishVolume calls.", "provider"),
		publishErrors:   c("node_publish_error_total", "Failed NodePublishVolume calls.", "provider", "error_type"),
		unpublishes:     c("node_unpublish_total", "Successful NodeUnpublishVolume calls."),
		unpublishErrors: c("node_unpublish_error_total", "Failed NodeUnpublishVolume calls."),
		rotations:       c("rotation_reconcile_total", "Volume refreshes that reached the provider.", "provider", "rotated"),
		rotationErrors:  c("rotation_reconcile_error_total", "Volume refreshes that failed (previous files kept).", "provider", "error_type"),
		syncs:           c("sync_k8s_secret_total", "Secret syncs of secretObjects.", "result"),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "node_publish_duration_seconds", Help: "NodePublishVolume duration, provider included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}}, []string{"provider"}),
	}
	if reg != nil {
		reg.MustRegister(m.publishes, m.publishErrors, m.unpublishes, m.unpublishErrors, m.rotations, m.rotationErrors, m.syncs, m.duration)
	}
	return m
}

func (m *Metrics) publish(provider string, d time.Duration) {
	m.publishes.WithLabelValues(provider).Inc()
	m.duration.WithLabelValues(provider).Observe(d.Seconds())
}

func (m *Metrics) publishError(provider, code string) {
	m.publishErrors.WithLabelValues(provider, code).Inc()
}

func (m *Metrics) unpublish(ok bool) {
	if ok {
		m.unpublishes.WithLabelValues().Inc()
	} else {
		m.unpublishErrors.WithLabelValues().Inc()
	}
}

func (m *Metrics) rotation(provider string, rotated bool, errCode string) {
	if errCode != "" {
		m.rotationErrors.WithLabelValues(provider, errCode).Inc()
		return
	}
	r := "false"
	if rotated {
		r = "true"
	}
	m.rotations.WithLabelValues(provider, r).Inc()
}

func (m *Metrics) sync(ok bool) {
	r := "ok"
	if !ok {
		r = "error"
	}
	m.syncs.WithLabelValues(r).Inc()
}
