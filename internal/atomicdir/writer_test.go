package atomicdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func readAll(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(rel, "..") {
			if d.IsDir() && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type()&os.ModeSymlink != 0 {
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			if fi.IsDir() {
				return filepath.WalkDir(p+"/", func(q string, e fs.DirEntry, err error) error {
					if err == nil && !e.IsDir() {
						b, _ := os.ReadFile(q)
						r, _ := filepath.Rel(p, q)
						out[filepath.Join(rel, r)] = string(b)
					}
					return err
				})
			}
			b, err := os.ReadFile(p)
			out[rel] = string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWrite(t *testing.T) {
	old := syscall.Umask(0o077) // a strict umask must not narrow the modes asked for
	defer syscall.Umask(old)
	dir := t.TempDir()
	steps := []struct {
		name        string
		files       []File
		wantChanged bool
		want        map[string]string
		wantErr     string
	}{
		{"first write", []File{{"a", 0o644, []byte("1")}, {"sub/b", 0o400, []byte("2")}}, true, map[string]string{"a": "1", "sub/b": "2"}, ""},
		{"same again", []File{{"sub/b", 0o400, []byte("2")}, {"a", 0o644, []byte("1")}}, false, map[string]string{"a": "1", "sub/b": "2"}, ""},
		{"mode only", []File{{"a", 0o600, []byte("1")}, {"sub/b", 0o400, []byte("2")}}, true, map[string]string{"a": "1", "sub/b": "2"}, ""},
		{"content and removal", []File{{"a", 0o600, []byte("new")}}, true, map[string]string{"a": "new"}, ""},
		{"traversal refused", []File{{"../escape", 0o644, []byte("x")}}, false, map[string]string{"a": "new"}, "'..' is not allowed"},
		{"file and dir", []File{{"x", 0o644, nil}, {"x/y", 0o644, nil}}, false, map[string]string{"a": "new"}, "both a file and the directory"},
		{"duplicate", []File{{"x", 0o644, nil}, {"x", 0o644, nil}}, false, map[string]string{"a": "new"}, "written twice"},
		{"special bits", []File{{"x", os.ModeSetuid | 0o755, nil}}, false, map[string]string{"a": "new"}, "beyond the permissions"},
	}
	for _, s := range steps {
		changed, err := Write(dir, s.files)
		if s.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Fatalf("%s: error %v, want %q", s.name, err, s.wantErr)
			}
		} else if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if changed != s.wantChanged {
			t.Errorf("%s: changed = %v, want %v", s.name, changed, s.wantChanged)
		}
		if got := readAll(t, dir); fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Errorf("%s: files %v, want %v", s.name, got, s.want)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "a"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode of a: %v %v, want 0600", fi.Mode().Perm(), err)
	}
	time.Sleep(PayloadGrace)
	if _, err := Write(dir, []File{{"a", 0o600, []byte("last")}}); err != nil {
		t.Fatal(err)
	}
	if names := entryNames(dir); len(names) != 4 { // a, ..data, the payload and the one it replaced
		t.Errorf("dir holds %v, want a, ..data and two payloads: older ones are pruned, the one just replaced kept for the grace", names)
	}
}

func entryNames(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestRotatedOutPayloadLeaves: after a rotation, the old payload (holding
// the old secret) is gone once the grace has passed, without another
// write.
func TestRotatedOutPayloadLeaves(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"old-secret", "new-secret"} {
		if _, err := Write(dir, []File{{"s", 0o600, []byte(v)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := Prune(dir); err != nil {
		t.Fatal(err)
	}
	if names := entryNames(dir); len(names) != 4 {
		t.Fatalf("the replaced payload left before its grace: %v", names)
	}
	time.Sleep(PayloadGrace + 50*time.Millisecond)
	if err := Prune(dir); err != nil {
		t.Fatal(err)
	}
	if names := entryNames(dir); len(names) != 3 {
		t.Errorf("dir holds %v after the grace, want s, ..data and one payload", names)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); string(b) == "old-secret" {
				t.Errorf("the rotated-out secret is still at %s", p)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAtomicRotations rotates three files 1,000 times while readers loop
// over them: every read returns one complete version, never a torn or
// missing file, and a file's version never goes backwards.
func TestAtomicRotations(t *testing.T) {
	dir := t.TempDir()
	content := func(v int) []byte { return []byte(strings.Repeat(fmt.Sprintf("v%06d;", v), 4096)) } // 32 KiB
	write := func(v int) {
		if _, err := Write(dir, []File{{"a", 0o644, content(v)}, {"b", 0o644, content(v)}, {"dir/c", 0o644, content(v)}}); err != nil {
			t.Error(err)
		}
	}
	write(0)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads atomic.Int64
	for _, name := range []string{"a", "b", "dir/c"} {
		wg.Go(func() {
			last := -1
			for !stop.Load() {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Errorf("read %s: %v", name, err)
					return
				}
				var v int
				if _, err := fmt.Sscanf(string(b), "v%06d;", &v); err != nil || string(b) != string(content(v)) {
					t.Errorf("%s: torn read (%d bytes)", name, len(b))
					return
				}
				if v < last {
					t.Errorf("%s went back from %d to %d", name, last, v)
					return
				}
				last = v
				reads.Add(1)
			}
		})
	}
	for v := 1; v <= 1000; v++ {
		write(v)
	}
	stop.Store(true)
	wg.Wait()
	if reads.Load() < 100 {
		t.Errorf("only %d reads happened during the rotations: the test proves little", reads.Load())
	}
}

func TestMountTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts tmpfs: run as root (make test)")
	}
	dir := filepath.Join(t.TempDir(), "mount")
	for range 2 { // idempotent
		if err := MountTmpfs(dir); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := Mounted(dir); err != nil || !ok {
		t.Fatalf("not mounted: %v", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Type != 0x01021994 { // TMPFS_MAGIC
		t.Fatalf("filesystem type %x, want tmpfs", st.Type)
	}
	if _, err := Write(dir, []File{{"s", 0o600, []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // succeeds when already gone
		if err := Unmount(dir); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir still there: %v", err)
	}
}

// FuzzWrite writes arbitrary file sets: Write either refuses them or puts
// every file inside dir, readable through its top-level symlink.
func FuzzWrite(f *testing.F) {
	f.Add("a", "b/c", "x")
	f.Add("../x", "a", "y")
	f.Add("a/..data", ".hidden", "z")
	f.Add("a", "a/b", "")
	f.Fuzz(func(t *testing.T, p1, p2, data string) {
		root := t.TempDir()
		dir := filepath.Join(root, "vol")
		os.Mkdir(dir, 0o755)
		_, err := Write(dir, []File{{p1, 0o644, []byte(data)}, {p2, 0o600, []byte(data)}})
		outside, _ := os.ReadDir(root)
		if len(outside) != 1 {
			t.Fatalf("Write(%q, %q) created files beside the volume", p1, p2)
		}
		if err != nil {
			return
		}
		for _, p := range []string{p1, p2} {
			if b, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(b) != data {
				t.Fatalf("file %q not readable after Write: %v", p, err)
			}
		}
	})
}

// FuzzValidatePath checks that an accepted path never leaves its root.
func FuzzValidatePath(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../a", "/a", "a/./b", "a\\..\\b", ".hidden", "a/..data"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if ValidatePath(p) != nil {
			return
		}
		clean := filepath.Clean("/root/" + p)
		if !strings.HasPrefix(clean, "/root/") || clean != "/root/"+p {
			t.Fatalf("accepted %q, which resolves to %q", p, clean)
		}
	})
}

// TestWriteOwned: with the pod's fsGroup, every file and directory of the
// payload is group-owned, files gain group read and directories group
// traversal (not others'), and a rewrite (rotation) keeps it so; a change
// of group alone rewrites.
func TestWriteOwned(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root (make test)")
	}
	dir := t.TempDir()
	const gid = 4321
	files := []File{{Path: "secret1", Mode: 0o400, Data: []byte("v1")}, {Path: "certs/tls.crt", Mode: 0o644, Data: []byte("c")}}
	if _, err := WriteOwned(dir, files, gid); err != nil {
		t.Fatal(err)
	}
	check := func(rel string, wantMode os.FileMode) {
		t.Helper()
		fi, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if groupOf(fi) != gid || fi.Mode().Perm() != wantMode {
			t.Errorf("%s: group %d mode %o, want %d %o", rel, groupOf(fi), fi.Mode().Perm(), gid, wantMode)
		}
	}
	check("secret1", 0o440)
	check("certs/tls.crt", 0o644)
	check("certs", 0o750)
	check("..data", 0o750)
	files[0].Data = []byte("v2")
	if changed, err := WriteOwned(dir, files, gid); err != nil || !changed {
		t.Fatalf("rotation: %v %v", changed, err)
	}
	check("secret1", 0o440)
	if changed, _ := WriteOwned(dir, files, gid); changed {
		t.Error("the same files and group were written again")
	}
	if changed, _ := WriteOwned(dir, files, gid+1); !changed {
		t.Error("a new group did not rewrite the files")
	}
}

// TestTmpfsOptions: the secrets tmpfs is nosuid, nodev and noexec, and
// sized from the largest payload instead of half the node's memory.
func TestTmpfsOptions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts tmpfs: run as root (make test)")
	}
	dir := filepath.Join(t.TempDir(), "mount")
	if err := MountTmpfsOwned(dir, NoGroup, 4<<20); err != nil {
		t.Fatal(err)
	}
	defer Unmount(dir)
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	const stNoSUID, stNoDev, stNoExec = 0x2, 0x4, 0x8
	if st.Flags&(stNoSUID|stNoDev|stNoExec) != stNoSUID|stNoDev|stNoExec {
		t.Errorf("mount flags %#x lack nosuid, nodev or noexec", st.Flags)
	}
	if size := int64(st.Blocks) * st.Bsize; size != TmpfsSize(4<<20) {
		t.Errorf("tmpfs size %d, want %d", size, TmpfsSize(4<<20))
	}
}
