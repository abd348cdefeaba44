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
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Audience is the service-account token audience identity binding uses.
const Audience = "api://AKSIdentityBinding"

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
}

// Proxy builds the transport to the token proxy once, on first use, so
// that a provider that never mounts with identity binding never dials it.
type Proxy struct {
	cfg Config

	mu sync.Mutex
	tr *transport
}

// New returns a Proxy for cfg.
func New(cfg Config) *Proxy { return &Proxy{cfg: cfg} }

// ErrNotConfigured is a provider that cannot tell where the proxy is.
var ErrNotConfigured = errors.New("identity binding: the token proxy is unknown")

// Transport is the transport to the proxy, for a credential's
// ClientOptions.
func (p *Proxy) Transport(ctx context.Context) (policy.Transporter, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tr != nil {
		return p.tr, nil
	}
	tr, err := p.build(ctx)
	if err != nil {
		return nil, err
	}
	p.tr = tr
	return tr, nil
}

// Endpoint names the proxy for error messages.
func (p *Proxy) Endpoint() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tr != nil {
		return p.tr.base.String() + " (server name " + p.tr.sni + ")"
	}
	if p.cfg.ProxyURL != "" {
		return p.cfg.ProxyURL
	}
	return p.cfg.APIServer
}

func (p *Proxy) build(ctx context.Context) (*transport, error) {
	pool := x509.NewCertPool()
	if len(p.cfg.CAData) == 0 || !pool.AppendCertsFromPEM(p.cfg.CAData) {
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
		if sni, err = discoverSNI(ctx, p.cfg.APIServer, pool); err != nil {
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

// ReadCAFile reads a CA bundle, or nil when there is none.
func ReadCAFile(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return b
}
