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
}
