package socket

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPath(t *testing.T) {
	tests := []struct {
		endpoint, want, wantErr string
	}{
		{"unix:///var/run/csi/csi.sock", "/var/run/csi/csi.sock", ""},
		{"unix://var/run/csi/csi.sock", "/var/run/csi/csi.sock", ""}, // upstream's two-slash spelling
		{"/etc/kubernetes/secrets-store-csi-providers/azure.sock", "/etc/kubernetes/secrets-store-csi-providers/azure.sock", ""},
		{"unix:///a/../b/x.sock", "/b/x.sock", ""},
		{"unix://", "", "names no socket file"},
		{"unix:///", "", "names no socket file"},
		{"tcp://127.0.0.1:80", "", "use unix:///path/to/socket"},
		{"relative.sock", "", "use unix:///path/to/socket"},
	}
	for _, tt := range tests {
		got, err := Path(tt.endpoint)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Path(%q) = %q, %v; want error %q", tt.endpoint, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Path(%q) = %q, %v; want %q", tt.endpoint, got, err, tt.want)
		}
	}
}

// TestListen: the directory is created, the socket is its owner's only, a
// stale socket is replaced, a live one or a regular file is refused.
func TestListen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugins", "kvmount")
	path := filepath.Join(dir, "csi.sock")
	l, err := Listen("unix://"+path, 0o750)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("directory mode %v, %v; want 0750", fi.Mode().Perm(), err)
	}
	if _, err := Listen("unix://"+path, 0o750); err == nil || !strings.Contains(err.Error(), "in use by another server") {
		t.Errorf("second server on a live socket: %v", err)
	}

	// An unclean exit leaves the socket file behind, with nobody listening.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	l2, err := Listen("unix://"+path, 0o750)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	l2.Close()

	file := filepath.Join(dir, "not-a-socket")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := Listen(file, 0o750); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Error("the regular file was touched")
	}
}

func FuzzPath(f *testing.F) {
	for _, s := range []string{"unix:///a/b", "unix://a", "/x", "unix://", "unix:///../../etc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, endpoint string) {
		p, err := Path(endpoint)
		if err == nil && (!filepath.IsAbs(p) || filepath.Clean(p) != p) {
			t.Fatalf("Path(%q) = %q: not a clean absolute path", endpoint, p)
		}
	})
}
