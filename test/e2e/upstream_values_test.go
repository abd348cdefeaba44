package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"kvmount.dev/kvmount/internal/localenv"
)

// unusedMark is how a chart's schema marks a value it accepts and does not
// use (docs/migration.md lists them).
const unusedMark = "accepted and not used"

// TestUpstreamValues: each upstream chart's values file (written from its
// documented keys and defaults) renders kvmount's chart of that layout, and
// so does every one of its values changed: each change either shows in the
// rendering, or is refused with a message naming the value, or is marked
// accepted-and-unused in the chart's schema (and then must leave the
// rendering as it was) — and every rendering passes a server-side dry run.
func TestUpstreamValues(t *testing.T) {
	env, _ := startFakeEnv(t, 1, nil)
	cluster := fmt.Sprintf("1.%d.0", serverMinor(t, env))
	for _, layout := range []struct{ name, chart, values string }{
		{"driver chart", "../../deploy/helm/kvmount", "testdata/upstream-values/driver-chart.yaml"},
		{"Azure chart", "../../deploy/helm/kvmount-azure", "testdata/upstream-values/azure-chart.yaml"},
	} {
		t.Run(layout.name, func(t *testing.T) { coverValues(t, env, cluster, layout.chart, layout.values) })
	}
}

// valuesCase is one value changed.
type valuesCase struct {
	path []string
	sets map[string]any // --set-json path=value
}

func coverValues(t *testing.T, env *localenv.Env, kube, chart, valuesFile string) {
	helm := filepath.Join(binDir(t), "helm")
	render := func(sets map[string]any) (string, error) {
		args := []string{"template", "kvmount", chart, "--namespace", "kube-system", "--kube-version", kube, "-f", valuesFile}
		keys := make([]string, 0, len(sets))
		for k := range sets {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b, _ := json.Marshal(sets[k])
			args = append(args, "--set-json", k+"="+string(b))
		}
		out, err := exec.Command(helm, args...).CombinedOutput()
		return string(out), err
	}
	base, err := render(nil)
	if err != nil {
		t.Fatalf("the upstream values file does not render: %v\n%s", err, base)
	}
	if err := env.Cluster.ApplyDryRun(context.Background(), []byte(base)); err != nil {
		t.Fatalf("server-side dry run of the upstream values file's rendering: %v", err)
	}
	schemas := map[string]map[string]any{"": readSchema(t, filepath.Join(chart, "values.schema.json"))}
	if sub := filepath.Join(chart, "charts", "kvmount", "values.schema.json"); fileExists(sub) {
		schemas["secrets-store-csi-driver"] = readSchema(t, sub)
	}
	var raw map[string]any
	b, err := os.ReadFile(valuesFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	var cases []valuesCase
	leaves(nil, raw, func(path []string, v any) { cases = append(cases, valuesCase{path: path, sets: probe(path, v)}) })
	applied, refused, unused := 0, 0, 0
	for _, c := range cases {
		key := strings.Join(c.path, ".")
		out, err := render(c.sets)
		switch {
		case err != nil:
			if !strings.Contains(out, c.path[len(c.path)-1]) {
				t.Errorf("%s: refused without naming it: %s", key, lastLines(out, 3))
			}
			refused++
		case out == base:
			if !markedUnused(schemas, c.path) {
				t.Errorf("%s: changing it changes nothing, and the chart's schema does not mark it %q", key, unusedMark)
			}
			unused++
		default:
			if markedUnused(schemas, c.path) {
				t.Errorf("%s: marked %q in the schema, yet changing it changes the rendering", key, unusedMark)
			}
			if err := env.Cluster.ApplyDryRun(context.Background(), []byte(out)); err != nil {
				t.Errorf("%s: the rendering with it changed fails a server-side dry run: %v", key, err)
			}
			applied++
		}
	}
	t.Logf("%d values: %d applied, %d refused with a message, %d accepted and unused", len(cases), applied, refused, unused)
}

// leaves calls f for each leaf of a values tree: scalars, lists and empty
// maps.
func leaves(path []string, v any, f func([]string, any)) {
	if m, ok := v.(map[string]any); ok && len(m) > 0 {
		for _, k := range slices.Sorted(mapsKeys(m)) {
			leaves(append(slices.Clone(path), k), m[k], f)
		}
		return
	}
	f(path, v)
}

func mapsKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// probe is a value different from v that a cluster accepts, for the value
// at path (and, for volume mounts, the volume they need).
func probe(path []string, v any) map[string]any {
	key := strings.Join(path, ".")
	last := path[len(path)-1]
	one := func(x any) map[string]any { return map[string]any{key: x} }
	switch x := v.(type) {
	case bool:
		return one(!x)
	case float64:
		switch {
		case strings.HasSuffix(strings.ToLower(last), "port"):
			return one(19000 + int(x)%1000)
		case last == "maxCallRecvMsgSize":
			return one(5000000)
		}
		return one(int(x) + 3)
	case []any, nil:
		return probeList(path, key, last)
	case map[string]any:
		if last == "resources" {
			return one(map[string]any{"limits": map[string]any{"cpu": "123m"}})
		}
		return one(map[string]any{"probe": "x"})
	}
	s, _ := v.(string)
	switch {
	case last == "repository":
		return one("mirror.example/probe/" + strings.Join(path[:len(path)-1], "-"))
	case last == "tag":
		return one("v9.9.9")
	case last == "digest":
		return one("sha256:" + strings.Repeat("a", 64))
	case last == "pullPolicy":
		return one("Always")
	case last == "metricsAddr":
		return one(":9123")
	case strings.HasSuffix(last, "Dir"):
		return one("/probe/" + last)
	case last == "healthzPath":
		return one("/probez")
	case strings.HasSuffix(last, "Interval"), strings.HasSuffix(last, "Timeout"):
		return one("17s")
	case last == "cpu" && slices.Contains(path, "limits"):
		return one("456m")
	case last == "memory" && slices.Contains(path, "limits"):
		return one("456Mi")
	case last == "cpu":
		return one("12m")
	case last == "memory":
		return one("12Mi")
	case last == "type" && slices.Contains(path, "updateStrategy"):
		return one("OnDelete")
	case last == "httpProxy", last == "httpsProxy":
		return one("http://proxy.example:3128")
	case last == "nameOverride", last == "fullnameOverride":
		return one("probe-name")
	case last == "priorityClassName":
		return one("probe-priority")
	case s == "":
		return one("probe")
	}
	return one(s + "-probe")
}

func probeList(path []string, key, last string) map[string]any {
	one := func(x any) map[string]any { return map[string]any{key: x} }
	switch last {
	case "tolerations":
		return one([]any{map[string]any{"key": "probe", "operator": "Exists"}})
	case "env":
		return one([]any{map[string]any{"name": "PROBE", "value": "x"}})
	case "volumes":
		return one([]any{map[string]any{"name": "probe", "emptyDir": map[string]any{}}})
	case "volumeMounts":
		vols := strings.Join(append(slices.Clone(path[:len(path)-1]), "volumes"), ".")
		return map[string]any{key: []any{map[string]any{"name": "probe", "mountPath": "/probe"}},
			vols: []any{map[string]any{"name": "probe", "emptyDir": map[string]any{}}}}
	case "imagePullSecrets":
		return one([]any{map[string]any{"name": "probe"}})
	case "tokenRequests":
		return one([]any{map[string]any{"audience": "probe"}})
	case "nodeSelectorTerms":
		return one([]any{map[string]any{"matchExpressions": []any{map[string]any{"key": "probe", "operator": "Exists"}}}})
	}
	return one([]any{"/probe/" + last})
}

func readSchema(t *testing.T, path string) map[string]any {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the chart has no values schema: %v", err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// markedUnused reports whether the schema marks path, or an object above
// it, as accepted and unused; a path under secrets-store-csi-driver is the
// subchart's.
func markedUnused(schemas map[string]map[string]any, path []string) bool {
	s := schemas[""]
	if sub, ok := schemas[path[0]]; ok && len(path) > 1 {
		s, path = sub, path[1:]
	}
	for _, k := range path {
		if d, _ := s["description"].(string); strings.Contains(d, unusedMark) {
			return true
		}
		props, _ := s["properties"].(map[string]any)
		next, ok := props[k].(map[string]any)
		if !ok {
			return false
		}
		s = next
	}
	d, _ := s["description"].(string)
	return strings.Contains(d, unusedMark)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// TestUpstreamValuesInstall: each upstream chart's values file, unchanged,
// installs kvmount's chart of its layout on the local cluster (the
// environment's own paths and azsim's endpoints over it), and the seed's
// pod mounts its secret.
func TestUpstreamValuesInstall(t *testing.T) {
	env, cs := startEnv(t, 1)
	ctx := context.Background()
	setupSeedVault(t, env, "from-upstream-values")
	const pod = "busybox-secrets-store-inline-user-msi"
	for i, layout := range []struct {
		name   string
		azure  bool
		values string
	}{
		{"driver chart", false, "testdata/upstream-values/driver-chart.yaml"},
		{"Azure chart", true, "testdata/upstream-values/azure-chart.yaml"},
	} {
		t.Run(layout.name, func(t *testing.T) {
			file, err := filepath.Abs(layout.values)
			if err != nil {
				t.Fatal(err)
			}
			if err := env.InstallWithValues(ctx, layout.azure, file); err != nil {
				t.Fatal(err)
			}
			value := fmt.Sprintf("mounted-%d", i)
			azsim(t, env, "keyvault secret set", map[string]any{"vaultName": "kvmount-e2e", "name": "secret1", "value": value})
			if err := env.Cluster.Apply(ctx, manifest(t, "pod-user-msi.yaml", nil)); err != nil {
				t.Fatal(err)
			}
			waitSecretFile(t, env, cs, pod, value)
			deletePod(t, cs, pod)
		})
	}
}

// deletePod deletes pod name of default and waits until it is gone.
func deletePod(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	zero := int64(0)
	if err := cs.CoreV1().Pods("default").Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "pod "+name+" gone", func() (bool, string) {
		_, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), errText(err)
	})
}
