// Package kubemetrics exports client-go's own metrics — the API client's
// rest_client_* and the work queues' workqueue_* families — under the names
// and labels upstream's driver exports them (through controller-runtime),
// so that the dashboards and alerts written for upstream keep working. The
// families are the process's: client-go keeps one registration per
// process, so Register takes effect once.
package kubemetrics

import (
	"context"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientmetrics "k8s.io/client-go/tools/metrics"
	"k8s.io/client-go/util/workqueue"
)

var (
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rest_client_requests_total",
		Help: "Number of HTTP requests, partitioned by status code, method, and host."}, []string{"code", "method", "host"})
	latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rest_client_request_duration_seconds",
		Help:    "Request latency in seconds. Broken down by verb, and host.",
		Buckets: []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60}}, []string{"verb", "host"})
	rateLimiter = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rest_client_rate_limiter_duration_seconds",
		Help:    "Client side rate limiter latency in seconds. Broken down by verb, and host.",
		Buckets: []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60}}, []string{"verb", "host"})

	depth = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "workqueue_depth", Help: "Current depth of workqueue"}, []string{"name", "controller"})
	adds  = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "workqueue_adds_total", Help: "Total number of adds handled by workqueue"}, []string{"name", "controller"})
	queue = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "workqueue_queue_duration_seconds",
		Help: "How long in seconds an item stays in workqueue before being requested", Buckets: prometheus.ExponentialBuckets(10e-9, 10, 12)}, []string{"name", "controller"})
	work = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "workqueue_work_duration_seconds",
		Help: "How long in seconds processing an item from workqueue takes.", Buckets: prometheus.ExponentialBuckets(10e-9, 10, 12)}, []string{"name", "controller"})
	unfinished = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "workqueue_unfinished_work_seconds",
		Help: "How many seconds of work has been done that is in progress and hasn't been observed by work_duration."}, []string{"name", "controller"})
	longest = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "workqueue_longest_running_processor_seconds",
		Help: "How many seconds has the longest running processor for workqueue been running."}, []string{"name", "controller"})
	retries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "workqueue_retries_total", Help: "Total number of retries handled by workqueue"}, []string{"name", "controller"})
)

var once sync.Once

// Register adds the families to reg and makes client-go report into them;
// call it before any client or queue is made. Only the first call takes
// effect.
func Register(reg prometheus.Registerer) {
	once.Do(func() {
		reg.MustRegister(requests, latency, rateLimiter, depth, adds, queue, work, unfinished, longest, retries)
		clientmetrics.Register(clientmetrics.RegisterOpts{RequestResult: resultAdapter{}, RequestLatency: latencyAdapter{latency},
			RateLimiterLatency: latencyAdapter{rateLimiter}})
		workqueue.SetProvider(queueProvider{})
	})
}

type resultAdapter struct{}

func (resultAdapter) Increment(_ context.Context, code, method, host string) {
	requests.WithLabelValues(code, method, host).Inc()
}

type latencyAdapter struct{ h *prometheus.HistogramVec }

func (a latencyAdapter) Observe(_ context.Context, verb string, u url.URL, d time.Duration) {
	a.h.WithLabelValues(verb, u.Host).Observe(d.Seconds())
}

// queueProvider gives each named queue its series; the controller label
// is the queue's name too, as controller-runtime sets both.
type queueProvider struct{}

func labels(name string) []string { return []string{name, name} }

func (queueProvider) NewDepthMetric(name string) workqueue.GaugeMetric {
	return depth.WithLabelValues(labels(name)...)
}
func (queueProvider) NewAddsMetric(name string) workqueue.CounterMetric {
	return adds.WithLabelValues(labels(name)...)
}
func (queueProvider) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return queue.WithLabelValues(labels(name)...)
}
func (queueProvider) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return work.WithLabelValues(labels(name)...)
}
func (queueProvider) NewUnfinishedWorkSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return unfinished.WithLabelValues(labels(name)...)
}
func (queueProvider) NewLongestRunningProcessorSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return longest.WithLabelValues(labels(name)...)
}
func (queueProvider) NewRetriesMetric(name string) workqueue.CounterMetric {
	return retries.WithLabelValues(labels(name)...)
}
