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
func MountTmpfs(dir string) error { return MountTmpfsOwned(dir, NoGroup) }

// MountTmpfsOwned is MountTmpfs with the tmpfs's root group-owned by gid
// and traversable by the group only (WriteOwned); gid NoGroup is
// MountTmpfs.
func MountTmpfsOwned(dir string, gid int) error {
	opts := "mode=0755"
	if gid != NoGroup {
		opts = fmt.Sprintf("mode=0750,gid=%d", gid)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if ok, err := Mounted(dir); err != nil || ok {
		return err
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

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
