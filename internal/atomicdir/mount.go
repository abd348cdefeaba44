package atomicdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Mounted reports whether dir is a mount point: its device differs from
// its parent's (tmpfs on a node's disk always does).
func Mounted(dir string) (bool, error) {
	var st, parent syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return false, nil
		}
		return false, err
	}
	if err := syscall.Stat(filepath.Dir(dir), &parent); err != nil {
		return false, err
	}
	return st.Dev != parent.Dev || st.Ino == parent.Ino, nil
}

// MountTmpfs creates dir if needed and mounts a tmpfs on it, unless one is
// already there. Secrets then live in memory only.
func MountTmpfs(dir string) error { return MountTmpfsOwned(dir, NoGroup, 0) }

// MountTmpfsOwned is MountTmpfs with the tmpfs's root group-owned by gid
// and traversable by the group only (WriteOwned); gid NoGroup is
// MountTmpfs. maxBytes, when positive, is the largest payload the volume
// must hold (the provider's largest response): the tmpfs is sized for
// three of them — the current payload, a new one being written and a
// retired one in its grace period — plus room for directories, instead of
// tmpfs's default of half the node's memory.
//
// The tmpfs is mounted nosuid, nodev and noexec: it holds secrets, never
// programs (upstream mounts it with none of the three; see
// docs/compatibility.md).
func MountTmpfsOwned(dir string, gid int, maxBytes int64) error {
	opts := "mode=0755"
	if gid != NoGroup {
		opts = fmt.Sprintf("mode=0750,gid=%d", gid)
	}
	if maxBytes > 0 {
		opts += fmt.Sprintf(",size=%d", TmpfsSize(maxBytes))
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if ok, err := Mounted(dir); err != nil || ok {
		return err
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", TmpfsFlags, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// TmpfsFlags are the secrets tmpfs's mount flags.
const TmpfsFlags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC

// TmpfsSize is the size of a volume whose payload is at most maxBytes.
func TmpfsSize(maxBytes int64) int64 { return 3*maxBytes + 1<<20 }

// Unmount empties dir (so that no plaintext stays even if the unmount
// fails), unmounts it and removes it. A dir that is already gone is fine.
func Unmount(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
	if ok, err := Mounted(dir); err == nil && ok {
		if err := syscall.Unmount(dir, 0); err != nil {
			if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s: %w", dir, err)
			}
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
