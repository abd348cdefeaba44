package e2e

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestMetricsAsUpstream scrapes the driver and the provider after mounts,
// a rotation, a failed mount and an unmount, and checks every metric
// upstream emits (testdata/upstream-metrics.txt, taken from upstream's
// source) for its name, type and label names, so that dashboards built on
// upstream keep working.
func TestMetricsAsUpstream(t *testing.T) {
	env, cs := startEnv(t, 1)
	ctx := context.Background()
	setupSeedVault(t, env, "m1")
	if err := env.Cluster.Apply(ctx, manifest(t, "pod-user-msi.yaml", nil)); err != nil {
		t.Fatal(err)
	}
	waitSecretFile(t, env, cs, "busybox-secrets-store-inline-user-msi", "m1")
	azsim(t, env, "keyvault secret set", map[string]any{"vaultName": "kvmount-e2e", "name": "secret1", "value": "m2"})
	waitSecretFile(t, env, cs, "busybox-secrets-store-inline-user-msi", "m2")
	// A disabled latest version makes the next refresh fail (and keep m2).
	azsim(t, env, "keyvault secret set", map[string]any{"vaultName": "kvmount-e2e", "name": "secret1", "value": "m3", "disabled": true})
	waitFor(t, 60*time.Second, "a failed refresh", func() (bool, string) {
		ev := strings.Join(events(cs, "default", "busybox-secrets-store-inline-user-msi"), " | ")
		return strings.Contains(ev, "SecretRotationFailed"), ev
	})
	if _, err := cs.CoreV1().Pods("default").Create(ctx, podWithClass("no-class", "missing-class", "", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the failed mount", func() (bool, string) {
		ev := strings.Join(events(cs, "default", "no-class"), " | ")
		return strings.Contains(ev, "not found in namespace"), ev
	})
	if err := cs.CoreV1().Pods("default").Delete(ctx, "busybox-secrets-store-inline-user-msi", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	n := env.Nodes[0]
	waitFor(t, 60*time.Second, "the unmount", func() (bool, string) {
		fams := scrape(t, n.DriverMetrics)
		return counterSum(fams["node_unpublish_total"]) >= 1, "no unpublish yet"
	})
	got := map[string]map[string]*dto.MetricFamily{"driver": scrape(t, n.DriverMetrics), "provider": scrape(t, n.ProviderMetrics)}
	for _, want := range upstreamMetrics(t) {
		fam := got[want.component][want.name]
		if fam == nil {
			t.Errorf("%s: no metric %s", want.component, want.name)
			continue
		}
		if typ := strings.ToLower(fam.GetType().String()); typ != want.typ {
			t.Errorf("%s: %s is a %s, upstream's a %s", want.component, want.name, typ, want.typ)
		}
		for _, m := range fam.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName())
			}
			slices.Sort(labels)
			if !slices.Equal(labels, want.labels) {
				t.Errorf("%s: %s has labels %v, upstream's %v", want.component, want.name, labels, want.labels)
				break
			}
		}
	}
}

type wantMetric struct {
	component, name, typ string
	labels               []string
}

func upstreamMetrics(t *testing.T) []wantMetric {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "upstream-metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []wantMetric
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		labels := fields[3:]
		slices.Sort(labels)
		out = append(out, wantMetric{fields[0], fields[1], fields[2], labels})
	}
	return out
}

func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func counterSum(f *dto.MetricFamily) float64 {
	var n float64
	for _, m := range f.GetMetric() {
		n += m.GetCounter().GetValue()
	}
	return n
}
