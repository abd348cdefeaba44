package clusterbench

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"kvmount.dev/kvmount/internal/localenv"
)

// TestDefaults: a run always has something to measure, identities never
// outnumber the classes that use them, and push mode keeps the poll as a
// safety net that cannot bring the change itself.
func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Config
		want Config
	}{
		{"empty", Config{}, Config{Nodes: 1, PodsPerNode: 1, Classes: 1, Identities: 1, Objects: 1, PollInterval: 10 * time.Second}},
		{"more identities than classes", Config{Classes: 2, Identities: 5, Objects: 3, Changes: 9}, Config{Nodes: 1, PodsPerNode: 1, Classes: 2, Identities: 2, Objects: 3, Changes: 3, PollInterval: 10 * time.Second}},
		{"push", Config{Push: true, PollInterval: time.Second}, Config{Nodes: 1, PodsPerNode: 1, Classes: 1, Identities: 1, Objects: 1, PollInterval: time.Hour, Push: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in
			got.defaults()
			if got.Logf == nil {
				t.Fatal("no Logf")
			}
			got.Logf = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestReaders: the bounds the load checks compare with — the (node,
// principal) pairs that mount an object, and with all objects the most
// Key Vault reads one poll may cost.
func TestReaders(t *testing.T) {
	for _, tc := range []struct {
		name                                      string
		nodes, pods, classes, identities, objects int
		wantReaders, wantPairs                    int
	}{
		{"TestScaleLoad's shape", 5, 20, 4, 2, 5, 10, 50},
		{"push bench: 20 nodes × 10 pods, 20 classes, 4 identities", 20, 10, 20, 4, 10, 80, 800},
		{"one pod per node", 4, 1, 4, 2, 3, 4, 12},
		{"one identity", 3, 7, 5, 1, 2, 3, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Nodes: tc.nodes, PodsPerNode: tc.pods, Classes: tc.classes, Identities: tc.identities, Objects: tc.objects}
			c.defaults()
			b := &bench{cfg: c}
			if got := b.readers(); got != tc.wantReaders {
				t.Errorf("readers %d, want %d", got, tc.wantReaders)
			}
			if got := b.uniquePairs(); got != tc.wantPairs {
				t.Errorf("unique (node, principal, object) %d, want %d", got, tc.wantPairs)
			}
		})
	}
}

func TestStatistics(t *testing.T) {
	sorted := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		p    int
		want float64
	}{{0, 1}, {50, 6}, {95, 10}, {100, 10}} {
		if got := pct(sorted, tc.p); got != tc.want {
			t.Errorf("p%d = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := pct(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v", got)
	}
	d := diff(map[string]int{"get pods": 5, "list nodes": 2, "watch x": 1}, map[string]int{"get pods": 3, "list nodes": 2, "create y": 4})
	if len(d) != 2 || d["get pods"] != 2 || d["watch x"] != 1 {
		t.Errorf("diff %v", d)
	}
	if got := spread([]float64{3, 1, 2}, "MiB"); got != "min 1.0, median 2.0, max 3.0 MiB" {
		t.Errorf("spread %q", got)
	}
	if got := formatCounts(map[string]int{"list b": 2, "get a": 1}, "%d"); got != "get a 1, list b 2" {
		t.Errorf("formatCounts %q", got)
	}
	if got := formatCounts(map[string]float64{}, "%.1f"); got != "none" {
		t.Errorf("formatCounts of nothing %q", got)
	}
}

// TestPrint: each mode reports its own rows, and push mode does not print
// the poll rows it did not measure.
func TestPrint(t *testing.T) {
	poll := Report{Config: Config{Nodes: 5, PodsPerNode: 20, Classes: 4, Objects: 5, Identities: 2, Polls: 2, PollInterval: 6 * time.Second},
		Pods: 100, MountRequests: map[string]int{"create secretproviderclasspodstatuses": 100}, UniquePairs: 50, PollKVReads: 25}
	var b strings.Builder
	poll.Print(&b)
	for _, want := range []string{"5 nodes × 20 pods, 4 classes of 5 objects, 2 identities, poll 6s, 2 polls changing 0 objects",
		"create secretproviderclasspodstatuses 100", "Key Vault reads per poll", "25.0 (unique node × principal × object: 50)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("poll report lacks %q:\n%s", want, b.String())
		}
	}
	push := poll
	push.Push = &PushReport{Events: 3, P50Sec: 1.06, MaxSec: 1.34, KVReadsPerEvent: 80, Readers: 80}
	b.Reset()
	push.Print(&b)
	for _, want := range []string{"push: Key Vault's events through Event Grid, 3 changes", "files: p50 1.06 s, max 1.34 s", "80.0 (readers: 80"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("push report lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "Key Vault reads per poll") {
		t.Errorf("push report prints poll rows:\n%s", b.String())
	}
}

// TestClassYAML: the bench's classes name every object once, with the
// identity and tenant given.
func TestClassYAML(t *testing.T) {
	b := &bench{cfg: Config{Objects: 3}, env: &localenv.Env{TenantID: "tenant-1"}}
	var class struct {
		Metadata struct{ Name, Namespace string }
		Spec     struct {
			Provider   string
			Parameters map[string]string
		}
	}
	if err := yaml.Unmarshal(b.classYAML(2, "client-7"), &class); err != nil {
		t.Fatal(err)
	}
	p := class.Spec.Parameters
	if class.Metadata.Name != "bench-2" || class.Spec.Provider != "azure" || p["userAssignedIdentityID"] != "client-7" || p["tenantId"] != "tenant-1" || p["keyvaultName"] != vault {
		t.Errorf("class %+v", class)
	}
	for o := range 3 {
		if n := strings.Count(p["objects"], "objectName: "+objectName(o)+"\n"); n != 1 {
			t.Errorf("object %s named %d times in %q", objectName(o), n, p["objects"])
		}
	}
}
