package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"kvmount.dev/kvmount/internal/localcluster"
)

// TestManifestsUpToDate: deploy/*.yaml are what the chart renders, so a
// change to the chart that was not rendered again fails here.
func TestManifestsUpToDate(t *testing.T) {
	bin, err := localcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	helm := filepath.Join(bin, "helm")
	if _, err := os.Stat(helm); err != nil {
		t.Fatalf("%v: run make tools", err)
	}
	out := t.TempDir()
	if err := run(helm, "../helm/kvmount", out); err != nil {
		t.Fatal(err)
	}
	err = filepath.Walk(out, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, path)
		want, _ := os.ReadFile(path)
		got, err := os.ReadFile(filepath.Join("..", rel))
		if err != nil || string(got) != string(want) {
			t.Errorf("deploy/%s is not what the chart renders: run make manifests", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// And no manifest stays that the chart no longer renders.
	have, err := generated("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range have {
		if _, err := os.Stat(filepath.Join(out, rel)); err != nil {
			t.Errorf("deploy/%s is no longer rendered by the chart: run make manifests (it removes it)", rel)
		}
	}
}

// TestStaleManifestRemoved: a manifest of a template the chart dropped is
// found by the check above and removed by render.
func TestStaleManifestRemoved(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "dropped.yaml")
	if err := os.WriteFile(stale, []byte(header+"kind: ConfigMap\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, "handwritten.yaml")
	if err := os.WriteFile(mine, []byte("kind: ConfigMap\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := generated(dir)
	if err != nil || len(got) != 1 || got[0] != "dropped.yaml" {
		t.Fatalf("generated: %v %v, want [dropped.yaml]", got, err)
	}
	bin, err := localcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	if err := run(filepath.Join(bin, "helm"), "../helm/kvmount", dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("render left a manifest the chart no longer renders")
	}
	if _, err := os.Stat(mine); err != nil {
		t.Error("render removed a file it did not write")
	}
}

// TestSubchartInSync: kvmount-azure's copy of the driver chart, and of its
// shared named templates, are the chart as it is: a change to the chart
// that was not copied fails here.
func TestSubchartInSync(t *testing.T) {
	dir := t.TempDir()
	copyTree(t, "../helm/kvmount-azure", filepath.Join(dir, "kvmount-azure"))
	copyTree(t, "../helm/kvmount", filepath.Join(dir, "kvmount"))
	if err := SyncSubchart(filepath.Join(dir, "kvmount"), Subchart(filepath.Join(dir, "kvmount"))); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "kvmount-azure")
	err := filepath.Walk(want, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, path)
		w, _ := os.ReadFile(path)
		got, err := os.ReadFile(filepath.Join("../helm/kvmount-azure", rel))
		if err != nil || string(got) != string(w) {
			t.Errorf("deploy/helm/kvmount-azure/%s is not the driver chart's copy: run make manifests", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSchemasInSync: both charts' values.schema.json are what
// deploy/helm/values-schema.py writes (make manifests), so the schema that
// refuses unknown keys never drifts from the generator's list.
func TestSchemasInSync(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 not installed: run make host-deps")
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	if out, err := exec.Command("python3", "../helm/values-schema.py", a, b).CombinedOutput(); err != nil {
		t.Fatalf("values-schema.py: %v\n%s", err, out)
	}
	for got, want := range map[string]string{a: "../helm/kvmount/values.schema.json", b: "../helm/kvmount-azure/values.schema.json"} {
		g, _ := os.ReadFile(got)
		w, err := os.ReadFile(want)
		if err != nil || string(g) != string(w) {
			t.Errorf("%s is not what values-schema.py writes: run make manifests", want)
		}
	}
}
