package atomicdir

import (
	"fmt"
	"strings"
)

// ValidatePath accepts a relative file path that stays inside the mount:
// not absolute, no empty, "." or ".." element (nor "..", anywhere, as the
// upstream Azure provider refuses, which also keeps the writer's ..data and
// ..<timestamp> names free), elements of at most 255 bytes, 4096 in all,
// no NUL or backslash.
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
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("NUL is not allowed in file names")
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
