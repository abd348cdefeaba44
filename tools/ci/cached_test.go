package ci

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCachedScript: scripts/cached.sh builds an entry once and links it,
// reuses it without running the build, keeps a failed build out, writes
// into the link itself for an uncacheable (empty) stamp, says that a long
// build still runs, and keeps only the CACHED_KEEP most recently used
// entries, a reuse counting as a use.
func TestCachedScript(t *testing.T) {
	script, err := filepath.Abs("../../scripts/cached.sh")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	cache, link := filepath.Join(tmp, "cache"), filepath.Join(tmp, "clone", "bin", "images")
	run := func(stamp, build string) (string, error) {
		cmd := exec.Command("bash", script, "images", link, stamp, "--", "sh", "-c", build)
		cmd.Env = append(os.Environ(), "KVMOUNT_CACHE_DIR="+cache, "CACHED_KEEP=2", "CACHED_HEARTBEAT=1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	built := func(stamp, content string) {
		t.Helper()
		if out, err := run(stamp, `echo `+content+` > "$CACHED_OUT/f"`); err != nil {
			t.Fatalf("stamp %s: %v: %s", stamp, err, out)
		}
		if b, err := os.ReadFile(filepath.Join(link, "f")); err != nil || string(b) != content+"\n" {
			t.Fatalf("stamp %s: the link reads %q (%v), want %s", stamp, b, err, content)
		}
	}
	entries := func() []string {
		t.Helper()
		list, err := os.ReadDir(filepath.Join(cache, "images"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range list {
			names = append(names, e.Name())
		}
		return names
	}

	built("s1", "one")
	if out, err := run("s1", "exit 1"); err != nil || !strings.Contains(out, "up to date") {
		t.Fatalf("a second use of s1 built it again: %v: %s", err, out)
	}
	built("s2", "two")
	if out, err := run("s1", "exit 1"); err != nil { // s1 is now the most recent use
		t.Fatalf("reuse of s1: %v: %s", err, out)
	}
	built("s3", "three")
	if got := entries(); !slices.Equal(got, []string{"s1", "s3"}) {
		t.Errorf("with CACHED_KEEP=2 the entries are %v, want s1 (reused) and s3 (new)", got)
	}
	if out, err := run("s4", `echo half > "$CACHED_OUT/f"; exit 3`); err == nil {
		t.Errorf("a failed build succeeded: %s", out)
	}
	if got := entries(); !slices.Equal(got, []string{"s1", "s3"}) {
		t.Errorf("after a failed build the entries are %v", got)
	}
	// A long build says it still runs.
	if out, err := run("s5", `sleep 3.5; echo slow > "$CACHED_OUT/f"`); err != nil || !strings.Contains(out, "images: still building, 2s so far") {
		t.Errorf("a 3.5 s build with a 1 s heartbeat: %v: %q", err, out)
	}
	built("", "uncached")
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink != 0 {
		t.Errorf("an empty stamp left %s a link (%v)", link, err)
	}
}
