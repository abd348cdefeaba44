// Package providers is the driver's client of provider plugins: it finds a
// provider's socket (<dir>/<name>.sock, in the configured directories, in
// order), keeps one gRPC connection per provider, and calls Mount with a
// deadline shorter than kubelet's.
package providers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// Errors callers branch on.
var (
	ErrInvalidName = errors.New("invalid provider name")
	ErrNotFound    = errors.New("provider not found")
)

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,30}$`)

// serviceConfig waits for a provider's socket to come back (a provider
// restarting) rather than failing at once. It retries nothing: a provider
// that answered has already retried what was worth retrying (Key Vault's
// 5xx, a throttled vault's Retry-After), and retrying its Unavailable
// here multiplied the load on a struggling vault; kubelet retries the
// mount itself.
const serviceConfig = `{"methodConfig":[{"name":[{"service":"v1alpha1.CSIDriverProvider"}],"waitForReady":true}]}`

// Clients finds and dials providers.
type Clients struct {
	dirs       []string
	maxRecvMsg int

	mu    sync.Mutex // guards conns
	conns map[string]*grpc.ClientConn
}

// New returns Clients that look for sockets in dirs, in order.
func New(dirs []string, maxRecvMsg int) *Clients {
	if maxRecvMsg == 0 {
		maxRecvMsg = 4 << 20
	}
	return &Clients{dirs: dirs, maxRecvMsg: maxRecvMsg, conns: map[string]*grpc.ClientConn{}}
}

// Socket returns the socket path of provider name, the first that exists.
func (c *Clients) Socket(name string) (string, error) {
	if !nameRE.MatchString(name) {
		return "", fmt.Errorf("%w %q: use letters, digits, _ and - (at most 30)", ErrInvalidName, name)
	}
	for _, d := range c.dirs {
		p := filepath.Join(d, name+".sock")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: no %s.sock in %v: is the %s provider running on this node?", ErrNotFound, name, c.dirs, name)
}

// client returns the cached connection to provider name.
func (c *Clients) client(name string) (v1alpha1.CSIDriverProviderClient, error) {
	path, err := c.Socket(name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key := name + "|" + path
	if conn, ok := c.conns[key]; ok {
		return v1alpha1.NewCSIDriverProviderClient(conn), nil
	}
	// The socket is only reachable by root on the node: its protection is
	// the file system, so the connection is not encrypted.
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority("localhost"), grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(c.maxRecvMsg)))
	if err != nil {
		return nil, fmt.Errorf("dial provider %s: %w", name, err)
	}
	c.conns[key] = conn
	return v1alpha1.NewCSIDriverProviderClient(conn), nil
}

// Mount calls provider name's Mount, bounded by timeout.
func (c *Clients) Mount(ctx context.Context, name string, req *v1alpha1.MountRequest, timeout time.Duration) (*v1alpha1.MountResponse, error) {
	client, err := c.client(name)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := client.Mount(cctx, req)
	if err != nil && ctx.Err() == nil && deadlinePassed(cctx, err) {
		// The call's own deadline passed: say so whatever gRPC reported
		// (a cancelled stream may arrive as "RST_STREAM ... CANCEL").
		err = fmt.Errorf("%w after %s: %w", context.DeadlineExceeded, timeout, err)
	}
	return resp, err
}

// deadlinePassed reports whether a call ended by its deadline: its context
// says so, or the provider's side, whose copy of the deadline (sent as a
// rounded timeout) can run out a moment earlier, cancelled the stream
// within a few milliseconds of it.
func deadlinePassed(cctx context.Context, err error) bool {
	if cctx.Err() == context.DeadlineExceeded {
		return true
	}
	d, ok := cctx.Deadline()
	switch status.Code(err) {
	case codes.DeadlineExceeded:
		return ok // gRPC compares the deadline with the clock before the context's timer fires
	case codes.Canceled:
		return ok && time.Until(d) < 50*time.Millisecond
	}
	return false
}

// Close closes every connection.
func (c *Clients) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, conn := range c.conns {
		conn.Close()
		delete(c.conns, k)
	}
}

// HealthCheck calls Version on every provider socket found in the
// directories each interval until ctx ends, as upstream's
// --provider-health-check does: a provider that does not answer within
// five seconds is logged, with its socket.
func (c *Clients) HealthCheck(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, name := range c.found() {
			if err := c.version(ctx, name); err != nil {
				log.Warn("provider health check failed", "provider", name, "err", err)
			} else {
				log.Debug("provider healthy", "provider", name)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// found lists the providers with a socket in the directories.
func (c *Clients) found() []string {
	seen := map[string]bool{}
	var names []string
	for _, d := range c.dirs {
		socks, _ := filepath.Glob(filepath.Join(d, "*.sock"))
		for _, s := range socks {
			name := strings.TrimSuffix(filepath.Base(s), ".sock")
			if nameRE.MatchString(name) && !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	return names
}

func (c *Clients) version(ctx context.Context, name string) error {
	client, err := c.client(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = client.Version(ctx, &v1alpha1.VersionRequest{Version: "v1alpha1"}, grpc.WaitForReady(false))
	return err
}
