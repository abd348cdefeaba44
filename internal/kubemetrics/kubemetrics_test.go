package kubemetrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
)

// TestFamilies: an API request and a queue's add show in upstream's
// families, with upstream's labels.
func TestFamilies(t *testing.T) {
	reg := prometheus.NewRegistry()
	Register(reg)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"kind":"NamespaceList","apiVersion":"v1","items":[]}`))
	}))
	defer srv.Close()
	cs := kubernetes.NewForConfigOrDie(&rest.Config{Host: srv.URL})
	if _, err := cs.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	q := workqueue.NewTypedWithConfig(workqueue.TypedQueueConfig[string]{Name: "secretsync"})
	q.Add("a")
	q.ShutDown()
	host := strings.TrimPrefix(srv.URL, "http://")
	if got := testutil.ToFloat64(requests.WithLabelValues("200", "GET", host)); got != 1 {
		t.Errorf("rest_client_requests_total{code=200,method=GET} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(adds.WithLabelValues("secretsync", "secretsync")); got != 1 {
		t.Errorf("workqueue_adds_total{name=secretsync} = %v, want 1", got)
	}
	n, err := testutil.GatherAndCount(reg, "rest_client_request_duration_seconds", "workqueue_depth")
	if err != nil || n == 0 {
		t.Errorf("families not gathered: %d, %v", n, err)
	}
}
