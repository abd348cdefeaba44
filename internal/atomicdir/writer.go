// Package atomicdir owns the files of one pod volume: it mounts a tmpfs at
// the target path and writes the provider's files so that a reader sees the
// old set or the new set, never a mix and never a missing file — the
// kubelet AtomicWriter scheme: files go into a new ..<timestamp> directory,
// a ..data symlink is swapped to it by rename(2), and every top-level name
// is a symlink through ..data. Identical content is not rewritten. A
// payload swapped out stays for a grace period, so that a reader caught
// mid-lookup by a swap never finds its file missing, and is then removed
// (Prune), so a rotated-out secret does not linger in the volume.
//
// Write and Prune offer no concurrency of their own: callers serialise
// them per directory (the CSI node server holds a per-volume lock).
package atomicdir

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	dataDir    = "..data"
	dataDirTmp = "..data_tmp"
)

// File is one file to write.
type File struct {
	Path string
	Mode os.FileMode
	Data []byte
}

// Write makes dir hold exactly files. It reports whether anything changed;
// when nothing did, dir is not touched.
func Write(dir string, files []File) (bool, error) {
	if err := check(files); err != nil {
		return false, err
	}
	if same, err := unchanged(dir, files); err != nil || same {
		return false, err
	}
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return false, fmt.Errorf("create payload dir: %w", err)
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		return false, err
	}
	if err := writeFiles(ts, files); err != nil {
		os.RemoveAll(ts)
		return false, err
	}
	old, _ := os.Readlink(filepath.Join(dir, dataDir))
	if err := swap(dir, filepath.Base(ts)); err != nil {
		os.RemoveAll(ts)
		return false, err
	}
	if old != "" {
		// The retired payload's mtime is when it was swapped out: the
		// start of its grace period.
		now := time.Now()
		_ = os.Chtimes(filepath.Join(dir, old), now, now)
	}
	if err := linkTopLevel(dir, files); err != nil {
		return true, err
	}
	return true, Prune(dir)
}

// PayloadGrace is how long a payload stays after it was swapped out. A
// reader whose path lookup resolved ..data to it a moment before the swap
// still finds its file, however fast rotations come (seen: a reader on a
// loaded machine stalled across two back-to-back rotations). Callers run
// Prune after it, so that the old secret leaves even if no write follows.
const PayloadGrace = time.Second

// Prune removes every payload but the current one that was swapped out at
// least PayloadGrace ago.
func Prune(dir string) error {
	cur, _ := os.Readlink(filepath.Join(dir, dataDir))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, "..") || name == dataDir || name == cur {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) < PayloadGrace {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("remove old payload %s: %w", name, err)
		}
	}
	return nil
}

// Published reports whether dir holds a written payload (..data): a
// mounted but empty tmpfs, left by a driver that died between mounting
// and writing, is not a published volume.
func Published(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, dataDir))
	return err == nil
}

func check(files []File) error {
	paths := make([]string, len(files))
	for i, f := range files {
		if err := ValidatePath(f.Path); err != nil {
			return fmt.Errorf("file %q: %w", f.Path, err)
		}
		if f.Mode&^os.ModePerm != 0 {
			return fmt.Errorf("file %q: mode %o has bits beyond the permissions", f.Path, f.Mode)
		}
		paths[i] = f.Path
	}
	return CheckPaths(paths)
}

// unchanged reports whether dir's current payload holds exactly files,
// with the same contents and modes.
func unchanged(dir string, files []File) (bool, error) {
	cur := filepath.Join(dir, dataDir)
	if _, err := os.Stat(cur); err != nil {
		return false, nil
	}
	n := 0
	err := filepath.WalkDir(cur+"/", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil || n != len(files) {
		return false, nil
	}
	for _, f := range files {
		p := filepath.Join(cur, f.Path)
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != f.Mode {
			return false, nil
		}
		data, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(data, f.Data) {
			return false, nil
		}
	}
	return true, nil
}

func writeFiles(root string, files []File) error {
	for _, f := range files {
		p := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("create dir for %s: %w", f.Path, err)
		}
		if err := os.WriteFile(p, f.Data, f.Mode); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		if err := os.Chmod(p, f.Mode); err != nil { // the umask may have narrowed it
			return fmt.Errorf("chmod %s: %w", f.Path, err)
		}
	}
	return nil
}

// swap points ..data at the new payload in one rename.
func swap(dir, payload string) error {
	tmp := filepath.Join(dir, dataDirTmp)
	_ = os.Remove(tmp)
	if err := os.Symlink(payload, tmp); err != nil {
		return fmt.Errorf("link new payload: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataDir)); err != nil {
		return fmt.Errorf("swap payload: %w", err)
	}
	return nil
}

// linkTopLevel makes every top-level name a symlink through ..data and
// removes the symlinks of names no longer written.
func linkTopLevel(dir string, files []File) error {
	want := map[string]bool{}
	for _, f := range files {
		top, _, _ := strings.Cut(f.Path, "/")
		want[top] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "..") || want[name] {
			continue
		}
		if e.Type()&os.ModeSymlink != 0 {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		link := filepath.Join(dir, name)
		target := filepath.Join(dataDir, name)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("replace %s: %w", name, err)
		}
		if err := os.Symlink(target, link); err != nil {
			return fmt.Errorf("link %s: %w", name, err)
		}
	}
	return nil
}
