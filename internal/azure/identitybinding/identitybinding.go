// Package identitybinding reaches AKS's token proxy, which identity binding
// (useAzureTokenProxy) gets Entra ID tokens from: the ordinary
// client-assertion token request, with the pod's service-account token for
// api://AKSIdentityBinding as the assertion, sent to the proxy instead of
// Entra ID. The proxy sits behind the cluster's API server address and is
// told apart by its TLS server name, which is derived from the API
// server's serving certificate; it is trusted with the cluster's CA.
//
// This is a plain HTTP transport (URL rewrite, server name, CA pool), the
// same wire behaviour as azidentity's WorkloadIdentityCredential with
// EnableAzureProxy, which needs a token file and process environment
// variables, where the provider has one token per mount.
package identitybinding

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Config says where the proxy is. Empty fields are found out: the proxy
// URL is the API server's, the server name is computed from the API
// server's certificate.
type Config struct {
	// ProxyURL is the token proxy (--token-proxy-url).
	ProxyURL string
	// SNIName is the proxy's TLS server name (--sni-name).
	SNIName string
	// APIServer is the cluster's API server URL, and CAData its CA (PEM),
	// which also signs the proxy's certificate.
	APIServer string
	CAData    []byte
	// CAFile, when set, holds the CA instead of CAData and is read again
	// whenever it changes: kubelet rotates the CA of a pod's projected
	// service-account volume in place, and the proxy's certificate follows.
	CAFile string
	// Now is the clock of the discovery backoff (nil: time.Now).
	Now func() time.Time
}

// Proxy reaches the token proxy. Its transport is built on first use, so a
// provider that never mounts with identity binding never dials it, and
// built again when the CA changes. Building (which may read the API
// server's certificate) runs once at a time, outside any lock callers
// share, and a failure is not retried before a backoff (1 s doubling to
// 1 min): a broken cluster costs one dial per backoff, not one per mount.
type Proxy struct {
	cfg Config

	mu       sync.Mutex // guards the fields below
	cur      *transport
	ca       caState
	lastErr  error
	failures int
	retryAt  time.Time
	building chan struct{} // closed when the build in progress ends
}

// caState is the CA file as last read.
type caState struct {
	mod  time.Time
	size int64
	ino  uint64
	pem  []byte
}

// inode is a file's inode number: a file replaced by rename (kubelet's
// atomic writer) is a new inode even when its size and time look the same.
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// New returns a Proxy for cfg.
func New(cfg Config) *Proxy {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Proxy{cfg: cfg}
}

// ErrNotConfigured is a provider that cannot tell where the proxy is.
var ErrNotConfigured = errors.New("identity binding: the token proxy is unknown")

// Discovery backoff bounds.
const (
	minBackoff = time.Second
	maxBackoff = time.Minute
)

// Ready builds the transport if it is not built for the current CA, or
// returns the last build's error while its backoff lasts.
func (p *Proxy) Ready(ctx context.Context) error {
	_, err := p.current(ctx)
	return err
}

// Transport is the transport to the proxy, for a credential's
// ClientOptions: it stays valid across CA rotations (each request uses the
// transport built for the current CA). It fails when Ready does.
func (p *Proxy) Transport(ctx context.Context) (policy.Transporter, error) {
	if err := p.Ready(ctx); err != nil {
		return nil, err
	}
	return proxyTransport{p}, nil
}

type proxyTransport struct{ p *Proxy }

// Do implements policy.Transporter.
func (t proxyTransport) Do(req *http.Request) (*http.Response, error) {
	tr, err := t.p.current(req.Context())
	if err != nil {
		return nil, err
	}
	return tr.Do(req)
}

// current returns the transport for the current CA, building it (once
// among concurrent callers) when there is none or the CA changed.
func (p *Proxy) current(ctx context.Context) (*transport, error) {
	for {
		pemNow, changed := p.readCA()
		p.mu.Lock()
		switch {
		case p.cur != nil && !changed:
			tr := p.cur
			p.mu.Unlock()
			return tr, nil
		case p.building != nil:
			wait := p.building
			p.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		case p.lastErr != nil && !changed && p.cfg.Now().Before(p.retryAt):
			err := p.lastErr
			p.mu.Unlock()
			return nil, err
		}
		done := make(chan struct{})
		p.building = done
		p.mu.Unlock()
		// The build serves every waiter: it runs on a context of its own,
		// so that the caller giving up does not fail it for the others.
		tr, err := p.build(context.WithoutCancel(ctx), pemNow)
		p.finish(tr, err, done)
		if err != nil {
			return nil, err
		}
		return tr, nil
	}
}

// finish records a build's outcome and wakes its waiters.
func (p *Proxy) finish(tr *transport, err error, done chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.building = nil
	close(done)
	if err != nil {
		p.failures++
		backoff := min(minBackoff<<min(p.failures-1, 10), maxBackoff)
		p.lastErr, p.retryAt = err, p.cfg.Now().Add(backoff)
		return
	}
	if p.cur != nil {
		p.cur.rt.CloseIdleConnections()
	}
	p.cur, p.lastErr, p.failures = tr, nil, 0
}

// readCA returns the CA (PEM) and whether it differs from the one the
// current transport trusts. The file is read only when its size or time
// changed since the last read.
func (p *Proxy) readCA() ([]byte, bool) {
	if p.cfg.CAFile == "" {
		return p.cfg.CAData, false
	}
	fi, err := os.Stat(p.cfg.CAFile)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil || (fi.ModTime().Equal(p.ca.mod) && fi.Size() == p.ca.size && inode(fi) == p.ca.ino) {
		return p.ca.pem, false
	}
	b, err := os.ReadFile(p.cfg.CAFile)
	if err != nil {
		return p.ca.pem, false
	}
	changed := string(b) != string(p.ca.pem)
	p.ca = caState{mod: fi.ModTime(), size: fi.Size(), ino: inode(fi), pem: b}
	return b, changed
}

// Endpoint names the proxy for error messages.
func (p *Proxy) Endpoint() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil {
		return p.cur.base.String() + " (server name " + p.cur.sni + ")"
	}
	if p.cfg.ProxyURL != "" {
		return p.cfg.ProxyURL
	}
	return p.cfg.APIServer
}

func (p *Proxy) build(ctx context.Context, caPEM []byte) (*transport, error) {
	pool := x509.NewCertPool()
	if len(caPEM) == 0 || !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%w: no cluster CA to trust it with (run the provider in a pod, or give --kubeconfig)", ErrNotConfigured)
	}
	raw := p.cfg.ProxyURL
	if raw == "" {
		raw = p.cfg.APIServer
	}
	if raw == "" {
		return nil, fmt.Errorf("%w: no --token-proxy-url and no API server address (run the provider in a pod, or give --kubeconfig)", ErrNotConfigured)
	}
	base, err := parseProxyURL(raw)
	if err != nil {
		return nil, err
	}
	sni := p.cfg.SNIName
	if sni == "" {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if sni, err = discoverSNI(dctx, p.cfg.APIServer, pool); err != nil {
			return nil, err
		}
	}
	return newTransport(base, sni, pool), nil
}

// parseProxyURL checks the proxy URL as azidentity does: https, no user,
// query or fragment.
func parseProxyURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--token-proxy-url %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "https":
		return nil, fmt.Errorf("--token-proxy-url %q: the token proxy is reached over https only", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("--token-proxy-url %q: give scheme, host and path only", raw)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// hcpName is the API server certificate's name that carries the control
// plane's ID.
var hcpName = regexp.MustCompile(`^hcp-kubernetes\.([0-9a-zA-Z-]+)\.svc\.cluster\.local$`)

// SNIFromNames computes the proxy's server name from the API server
// certificate's DNS names: for hcp-kubernetes.<id>.svc.cluster.local,
// "a" + lower(base32hex, no padding, of sha256("identity-binding" + id)) +
// ".ests.aks".
func SNIFromNames(names []string) (string, error) {
	for _, n := range names {
		if m := hcpName.FindStringSubmatch(n); m != nil {
			return SNIName(m[1]), nil
		}
	}
	return "", fmt.Errorf("identity binding: the API server's certificate has no hcp-kubernetes.<id>.svc.cluster.local name (it has %s): this is not an AKS cluster with identity binding, or set --sni-name", strings.Join(names, ", "))
}

// SNIName is the proxy's server name for control plane id.
func SNIName(id string) string {
	sum := sha256.Sum256([]byte("identity-binding" + id))
	return "a" + strings.ToLower(base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:])) + ".ests.aks"
}

// discoverSNI reads the API server's certificate (verified with the
// cluster CA) and computes the proxy's name from it.
func discoverSNI(ctx context.Context, apiServer string, pool *x509.CertPool) (string, error) {
	u, err := url.Parse(apiServer)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("%w: API server %q is not a URL", ErrNotConfigured, apiServer)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: pool, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return "", fmt.Errorf("identity binding: read the API server's certificate at %s to find the token proxy's name: %w", host, err)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", fmt.Errorf("identity binding: the API server at %s presented no certificate", host)
	}
	return SNIFromNames(certs[0].DNSNames)
}

// transport sends every request to the proxy: the request's path under the
// proxy's, its query kept, with the proxy's server name and the cluster's
// CA. It never goes through an HTTP proxy: the token proxy is in-cluster.
type transport struct {
	base *url.URL
	sni  string
	rt   *http.Transport
}

func newTransport(base *url.URL, sni string, pool *x509.CertPool) *transport {
	rt := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{ServerName: sni, RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &transport{base: base, sni: sni, rt: rt}
}

// Do implements policy.Transporter.
func (t *transport) Do(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	q := req.URL.RawQuery
	out.URL = t.base.JoinPath(req.URL.EscapedPath())
	out.URL.RawQuery = q
	out.Host = ""
	return t.rt.RoundTrip(out)
}
