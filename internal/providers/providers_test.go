package providers

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// provider is a provider plugin that answers Mount after delay with one
// file naming the directory it serves from.
type provider struct {
	v1alpha1.UnimplementedCSIDriverProviderServer
	name  string
	delay time.Duration
}

func (p *provider) Mount(ctx context.Context, _ *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	select {
	case <-time.After(p.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &v1alpha1.MountResponse{Files: []*v1alpha1.File{{Path: "from", Contents: []byte(p.name)}}}, nil
}

func (p *provider) Version(context.Context, *v1alpha1.VersionRequest) (*v1alpha1.VersionResponse, error) {
	return &v1alpha1.VersionResponse{Version: "v1alpha1", RuntimeName: p.name}, nil
}

// serve starts p on dir/name.sock until the test ends.
func serve(t *testing.T, dir, name string, p *provider) {
	t.Helper()
	os.MkdirAll(dir, 0o700)
	l, err := net.Listen("unix", filepath.Join(dir, name+".sock"))
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(s, p)
	go s.Serve(l)
	t.Cleanup(s.Stop)
}

// TestSocket: names are checked before any path is built from them, and
// the first directory holding the socket wins.
func TestSocket(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(second, "azure.sock"), nil, 0o600)
	os.WriteFile(filepath.Join(second, "vault.sock"), nil, 0o600)
	os.WriteFile(filepath.Join(first, "vault.sock"), nil, 0o600)
	c := New([]string{first, second}, 0)
	for name, want := range map[string]string{"azure": filepath.Join(second, "azure.sock"), "vault": filepath.Join(first, "vault.sock")} {
		if got, err := c.Socket(name); err != nil || got != want {
			t.Errorf("Socket(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, bad := range []string{"../azure", "a/b", "", strings.Repeat("x", 31), "azure.sock"} {
		if _, err := c.Socket(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Socket(%q): %v; want ErrInvalidName", bad, err)
		}
	}
	if _, err := c.Socket("gcp"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "is the gcp provider running on this node?") {
		t.Errorf("missing provider: %v", err)
	}
}

// TestMount: a real gRPC provider on a unix socket answers; one slower
// than the timeout fails with the deadline named, whatever gRPC reported;
// the caller's own cancellation is not reported as a deadline.
func TestMount(t *testing.T) {
	dir := t.TempDir()
	serve(t, dir, "fast", &provider{name: "fast"})
	serve(t, dir, "slow", &provider{name: "slow", delay: 10 * time.Second})
	c := New([]string{dir}, 0)
	defer c.Close()
	ctx := context.Background()
	resp, err := c.Mount(ctx, "fast", &v1alpha1.MountRequest{}, 5*time.Second)
	if err != nil || len(resp.Files) != 1 || string(resp.Files[0].Contents) != "fast" {
		t.Fatalf("Mount fast: %v %v", resp, err)
	}
	if _, err := c.Mount(ctx, "slow", &v1alpha1.MountRequest{}, 200*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "after 200ms") {
		t.Errorf("Mount slow: %v; want the deadline named", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := c.Mount(cctx, "slow", &v1alpha1.MountRequest{}, 5*time.Second); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Mount cancelled by the caller: %v; want a cancellation, not a deadline", err)
	}
	if len(c.conns) != 2 {
		t.Errorf("%d connections for two providers, want one each (reused)", len(c.conns))
	}
}

// TestFound: the health check's list: each provider once, in directory
// order, invalid names skipped; a provider that answers Version passes.
func TestFound(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	serve(t, first, "azure", &provider{name: "azure"})
	os.WriteFile(filepath.Join(second, "azure.sock"), nil, 0o600)
	os.WriteFile(filepath.Join(second, "bad name.sock"), nil, 0o600)
	os.WriteFile(filepath.Join(second, "vault.sock"), nil, 0o600)
	c := New([]string{first, second}, 0)
	defer c.Close()
	if got := strings.Join(c.found(), ","); got != "azure,vault" {
		t.Errorf("found %s, want azure,vault", got)
	}
	if err := c.version(context.Background(), "azure"); err != nil {
		t.Errorf("version of a live provider: %v", err)
	}
	if err := c.version(context.Background(), "vault"); err == nil {
		t.Error("version of a dead socket passed")
	}
}
