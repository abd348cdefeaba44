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
	"syscall"
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
func Write(dir string, files []File) (bool, error) { return WriteOwned(dir, files, NoGroup) }

// NoGroup leaves files and directories owned by the writer's group.
const NoGroup = -1

// WriteOwned is Write with every file and directory group-owned by gid
// (the pod's fsGroup), files readable by the group and directories
// traversable by it, so that a container running as a non-root member of
// the group reads them; gid NoGroup is Write.
func WriteOwned(dir string, files []File, gid int) (bool, error) {
	if err := check(files); err != nil {
		return false, err
	}
	files = withGroupRead(files, gid)
	if same, err := unchanged(dir, files, gid); err != nil || same {
		return false, err
	}
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return false, fmt.Errorf("create payload dir: %w", err)
	}
	if err := setOwner(ts, os.ModeDir|0o755, gid); err != nil {
		return false, err
	}
	if err := writeFiles(ts, files, gid); err != nil {
		os.RemoveAll(ts)
		return false, err
	}
	old, _ := os.Readlink(filepath.Join(dir, dataDir))
	if err := swap(dir, filepath.Base(ts), gid); err != nil {
		os.RemoveAll(ts)
		return false, err
	}
	if old != "" {
		// The retired payload's mtime is when it was swapped out: the
		// start of its grace period.
		now := time.Now()
		_ = os.Chtimes(filepath.Join(dir, old), now, now)
	}
	if err := linkTopLevel(dir, files, gid); err != nil {
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

// withGroupRead adds group read to every file's mode when a group owns
// them.
func withGroupRead(files []File, gid int) []File {
	if gid == NoGroup {
		return files
	}
	out := make([]File, len(files))
	for i, f := range files {
		f.Mode |= 0o040
		out[i] = f
	}
	return out
}

// setOwner sets a directory's or file's mode and, with a group, its group
// (directories then traversable by the group only, not by others).
func setOwner(path string, mode os.FileMode, gid int) error {
	if gid != NoGroup {
		if mode.IsDir() {
			mode = mode&^0o007 | 0o050
		}
		if err := os.Lchown(path, -1, gid); err != nil {
			return fmt.Errorf("chown %s to group %d: %w", path, gid, err)
		}
	}
	if err := os.Chmod(path, mode.Perm()); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	return nil
}

// unchanged reports whether dir's current payload holds exactly files,
// with the same contents, modes and group.
func unchanged(dir string, files []File, gid int) (bool, error) {
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
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != f.Mode || (gid != NoGroup && groupOf(fi) != gid) {
			return false, nil
		}
		data, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(data, f.Data) {
			return false, nil
		}
	}
	return true, nil
}

func writeFiles(root string, files []File, gid int) error {
	for _, f := range files {
		p := filepath.Join(root, f.Path)
		if err := mkdirs(root, filepath.Dir(f.Path), gid); err != nil {
			return fmt.Errorf("create dir for %s: %w", f.Path, err)
		}
		if err := os.WriteFile(p, f.Data, f.Mode); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		// The umask may have narrowed the mode.
		if err := setOwner(p, f.Mode, gid); err != nil {
			return err
		}
	}
	return nil
}

// mkdirs makes the directories of rel under root, each owned as setOwner
// says.
func mkdirs(root, rel string, gid int) error {
	if rel == "." {
		return nil
	}
	if err := mkdirs(root, filepath.Dir(rel), gid); err != nil {
		return err
	}
	p := filepath.Join(root, rel)
	if err := os.Mkdir(p, 0o755); errors.Is(err, os.ErrExist) {
		return nil
	} else if err != nil {
		return err
	}
	return setOwner(p, os.ModeDir|0o755, gid)
}

// swap points ..data at the new payload in one rename.
func swap(dir, payload string, gid int) error {
	tmp := filepath.Join(dir, dataDirTmp)
	_ = os.Remove(tmp)
	if err := os.Symlink(payload, tmp); err != nil {
		return fmt.Errorf("link new payload: %w", err)
	}
	if gid != NoGroup {
		if err := os.Lchown(tmp, -1, gid); err != nil {
			return fmt.Errorf("chown the new payload link: %w", err)
		}
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataDir)); err != nil {
		return fmt.Errorf("swap payload: %w", err)
	}
	return nil
}

// linkTopLevel makes every top-level name a symlink through ..data and
// removes the symlinks of names no longer written.
func linkTopLevel(dir string, files []File, gid int) error {
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
		if gid != NoGroup {
			if err := os.Lchown(link, -1, gid); err != nil {
				return fmt.Errorf("chown %s: %w", name, err)
			}
		}
	}
	return nil
}

// groupOf is a file's group.
func groupOf(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Gid)
	}
	return NoGroup
}
