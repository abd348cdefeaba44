package secretsstore

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestDeployedCRDsAreGenerated fails when deploy/ holds CRDs that the Go
// types no longer produce: run `make crds`.
func TestDeployedCRDsAreGenerated(t *testing.T) {
	want, err := CRDYAML()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../../deploy/crds/secrets-store.csi.x-k8s.io.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("deploy/crds/secrets-store.csi.x-k8s.io.yaml is out of date: run `make crds`")
	}
}

// TestSchemaMatchesUpstream compares each version's schema, descriptions
// aside, with the upstream driver's controller-gen output shipped in its
// module.
func TestSchemaMatchesUpstream(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/secrets-store-csi-driver").Output()
	if err != nil {
		t.Fatalf("locate the upstream module (it is a dependency): %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "bases")
	for _, c := range crds {
		up, err := os.ReadFile(filepath.Join(dir, "secrets-store.csi.x-k8s.io_"+c.plural+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var upstream map[string]any
		if err := yaml.Unmarshal(up, &upstream); err != nil {
			t.Fatal(err)
		}
		ours := roundTrip(t, c.object())
		for i, v := range versions(ours) {
			u := versions(upstream)[i]
			if v["name"] != u["name"] || v["storage"] != u["storage"] || v["served"] != u["served"] {
				t.Errorf("%s version %d: %v/%v/%v, upstream %v/%v/%v", c.plural, i, v["name"], v["storage"], v["served"], u["name"], u["storage"], u["served"])
			}
			if !reflect.DeepEqual(stripDescriptions(v["schema"]), stripDescriptions(u["schema"])) {
				t.Errorf("%s %s schema differs from upstream's", c.plural, v["name"])
			}
		}
	}
}

func roundTrip(t *testing.T, v any) map[string]any {
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func versions(crd map[string]any) []map[string]any {
	var out []map[string]any
	for _, v := range crd["spec"].(map[string]any)["versions"].([]any) {
		out = append(out, v.(map[string]any))
	}
	return out
}

func stripDescriptions(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range x {
			if k != "description" {
				m[k] = stripDescriptions(e)
			}
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = stripDescriptions(e)
		}
		return out
	}
	return v
}
