package atomicdir

import (
	"fmt"
	"path"
	"strings"
)

// ValidatePath accepts a relative file path that stays inside the mount:
// not absolute, no empty, "." or ".." element (nor "..", anywhere, as the
// upstream Azure provider refuses, which also keeps the writer's ..data and
// ..<timestamp> names free), elements of at most 255 bytes, 4096 in all,
// no control characters (a newline or tab in a file name breaks every tool
// that lists the volume) and no backslash.
func ValidatePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty file name")
	case len(p) > 4096:
		return fmt.Errorf("path is longer than 4096 bytes")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("absolute paths are not allowed: use a relative name")
	case strings.Contains(p, ".."):
		return fmt.Errorf("'..' is not allowed in file names")
	case strings.IndexFunc(p, isControl) >= 0:
		return fmt.Errorf("control characters (newline, tab, CR, NUL, …) are not allowed in file names")
	case strings.Contains(p, "\\"):
		return fmt.Errorf("backslashes are not allowed in file names: use / for sub-directories")
	}
	for _, el := range strings.Split(p, "/") {
		if el == "" || el == "." {
			return fmt.Errorf("empty or '.' path element: write a clean relative path such as dir/file")
		}
		if len(el) > 255 {
			return fmt.Errorf("path element longer than 255 bytes")
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// CheckPaths reports the first conflict among a volume's file paths: one
// written twice, or one that is both a file and another's directory (a and
// a/b), which no file system can hold.
func CheckPaths(paths []string) error {
	seen := make(map[string]bool, len(paths))
	for _, p := range paths {
		if seen[p] {
			return &PathConflictError{Path: p}
		}
		seen[p] = true
	}
	for _, p := range paths {
		for dir := path.Dir(p); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if seen[dir] {
				return &PathConflictError{Path: dir, Under: p}
			}
		}
	}
	return nil
}

// PathConflictError is a path written twice (Under empty) or a file that
// is also the directory of Under.
type PathConflictError struct {
	Path, Under string
}

func (e *PathConflictError) Error() string {
	if e.Under == "" {
		return fmt.Sprintf("file %q is written twice", e.Path)
	}
	return fmt.Sprintf("%q is both a file and the directory of %q", e.Path, e.Under)
}
