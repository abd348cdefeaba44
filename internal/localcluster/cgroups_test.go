package localcluster

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestBundleCgroups: the cgroups Stop removes are exactly the absolute
// cgroupfs paths of the node's task bundles; a systemd path, a relative
// one, a bundle without one and a malformed file are left out.
func TestBundleCgroups(t *testing.T) {
	state := t.TempDir()
	for id, config := range map[string]string{
		"sandbox":  `{"linux":{"cgroupsPath":"/k8s.io/sandbox"}}`,
		"app":      `{"ociVersion":"1.1.0","linux":{"cgroupsPath":"/kubepods/../k8s.io/app"}}`,
		"systemd":  `{"linux":{"cgroupsPath":"system.slice:cri-containerd:systemd"}}`,
		"relative": `{"linux":{"cgroupsPath":"k8s.io/relative"}}`,
		"none":     `{"linux":{}}`,
		"broken":   `{"linux":`,
	} {
		dir := filepath.Join(state, "io.containerd.runtime.v2.task", "k8s.io", id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := bundleCgroups(state)
	slices.Sort(got)
	if want := []string{"/k8s.io/app", "/k8s.io/sandbox"}; !slices.Equal(got, want) {
		t.Errorf("cgroups %q, want %q", got, want)
	}
	if got := bundleCgroups(filepath.Join(state, "missing")); len(got) != 0 {
		t.Errorf("a node without containerd state: %q", got)
	}
}

// TestHierarchies: this host's hierarchies are listed once each (no
// symlinked alias), each a cgroup directory.
func TestHierarchies(t *testing.T) {
	hs := hierarchies()
	if _, err := os.Stat(cgroupFS); err != nil {
		t.Skip("no cgroup file system")
	}
	if len(hs) == 0 {
		t.Fatalf("no hierarchy under %s", cgroupFS)
	}
	seen := map[string]bool{}
	for _, h := range hs {
		real, err := filepath.EvalSymlinks(h)
		if err != nil || seen[real] {
			t.Errorf("hierarchy %s listed twice or unreadable (%v)", h, err)
		}
		seen[real] = true
		if _, err := os.Stat(filepath.Join(h, "cgroup.procs")); err != nil {
			t.Errorf("%s is not a cgroup directory: %v", h, err)
		}
	}
}
