// Package socket listens on the unix sockets kvmount's gRPC servers use
// (the CSI driver's and the provider's): it reads unix:// endpoints in both
// spellings upstream accepts, creates the directory, removes a stale socket
// left by an unclean exit (the directory is a host path that outlives the
// process) and leaves the socket readable by its owner only.
package socket

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// Path returns the filesystem path of a unix:// endpoint. Both
// unix:///abs/path and unix://abs/path (read as /abs/path, as upstream
// does) are accepted, and so is a bare absolute path.
func Path(endpoint string) (string, error) {
	p, ok := strings.CutPrefix(endpoint, "unix://")
	if !ok {
		if strings.HasPrefix(endpoint, "/") {
			return filepath.Clean(endpoint), nil
		}
		return "", fmt.Errorf("endpoint %q: use unix:///path/to/socket", endpoint)
	}
	if p == "" || p == "/" {
		return "", fmt.Errorf("endpoint %q names no socket file", endpoint)
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return filepath.Clean(p), nil
}

// Listen listens on the unix socket at endpoint with mode 0600 in a
// directory created with dirMode if missing.
func Listen(endpoint string, dirMode os.FileMode) (net.Listener, error) {
	path, err := Path(endpoint)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The mode is set on the socket itself, not through the process-wide
	// umask (which would narrow every file other goroutines create); the
	// directory's mode guards the moment in between.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("restrict %s: %w", path, err)
	}
	return l, nil
}

// removeStale deletes a socket nobody listens on; a live one is an error,
// so two servers never fight over one endpoint.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket: remove it or choose another endpoint", path)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by another server", path)
	}
	return os.Remove(path)
}
