package main

import (
	"os"
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
