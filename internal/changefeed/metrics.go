package changefeed

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the feed's. Labels are bounded: the source (webhook, pull)
// and a result from a fixed list.
type Metrics struct {
	events *prometheus.CounterVec
	delays prometheus.Histogram
	writes *prometheus.CounterVec
}

// Sources of events.
const (
	SourceWebhook = "webhook"
	SourcePull    = "pull"
)

// NewMetrics registers the metrics on reg (nil: not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kvmount_events_total",
			Help: "Key Vault events received, by source (webhook, pull) and result (accepted, duplicate, ignored, unmatched, unknown_vault, malformed, unauthenticated, failed)"},
			[]string{"source", "result"}),
		delays: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kvmount_event_delay_seconds",
			Help:    "Time from a change in Key Vault (its event's time) to its record on the classes",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300, 3600}}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kvmount_class_change_writes_total",
			Help: "Writes of a change to a SecretProviderClass, by result (written, conflict, failed)"}, []string{"result"}),
	}
	for _, s := range []string{SourceWebhook, SourcePull} {
		for _, r := range []string{Accepted, Duplicate, Ignored, Unmatched, UnknownVault, Malformed, Unauthenticated, Failed} {
			m.events.WithLabelValues(s, r)
		}
	}
	for _, r := range []string{"written", "conflict", "failed"} {
		m.writes.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.events, m.delays, m.writes)
	}
	return m
}

func (m *Metrics) event(source, result string) { m.events.WithLabelValues(source, result).Inc() }

func (m *Metrics) delay(d time.Duration) { m.delays.Observe(max(d, 0).Seconds()) }

func (m *Metrics) write(result string) { m.writes.WithLabelValues(result).Inc() }
