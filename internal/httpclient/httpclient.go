// Package httpclient builds the HTTP transport kvmount's components talk to
// Azure (or azsim) with: the system roots plus extra CA files, and host
// overrides that dial every name under a suffix at a fixed address, like
// curl's --resolve but for a whole domain. Overrides are how a provider
// reaches a private endpoint without DNS, and how it reaches azsim.
package httpclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// Options configure a transport.
type Options struct {
	// CAFiles are PEM files of extra trusted CAs.
	CAFiles []string
	// OnlyCAFiles trusts CAFiles alone, not the system roots.
	OnlyCAFiles bool
	// Overrides maps a host suffix (azsim.test) to the address every host
	// at or under it is dialled at (127.0.0.1:16600).
	Overrides map[string]string
	// NoProxy ignores HTTPS_PROXY and friends (node-local endpoints:
	// IMDS and NMI are only reachable directly).
	NoProxy bool
}

// NewTransport returns a transport for opts.
func NewTransport(opts Options) (*http.Transport, error) {
	pool, err := roots(opts)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	overrides := map[string]string{}
	for suffix, addr := range opts.Overrides {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("host override %s=%s: the address must be host:port", suffix, addr)
		}
		overrides[strings.ToLower(strings.Trim(suffix, "."))] = addr
	}
	// The proxy settings are read now, not once per process as
	// http.ProxyFromEnvironment does: HTTPS_PROXY, HTTP_PROXY and
	// NO_PROXY, as upstream's SDK clients honour them.
	proxy := httpproxy.FromEnvironment().ProxyFunc()
	return &http.Transport{
		Proxy: func(r *http.Request) (*url.URL, error) {
			if opts.NoProxy {
				return nil, nil
			}
			return proxy(r.URL)
		},
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, hostport string) (net.Conn, error) {
			if host, _, err := net.SplitHostPort(hostport); err == nil {
				if addr, ok := Override(overrides, host); ok {
					hostport = addr
				}
			}
			return dialer.DialContext(ctx, network, hostport)
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}, nil
}

// Override returns the address host is dialled at, if an override applies.
func Override(overrides map[string]string, host string) (string, bool) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for suffix, addr := range overrides {
		if host == suffix || strings.HasSuffix(host, "."+suffix) {
			return addr, true
		}
	}
	return "", false
}

func roots(opts Options) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !opts.OnlyCAFiles {
		if sys, err := x509.SystemCertPool(); err == nil {
			pool = sys
		}
	}
	for _, f := range opts.CAFiles {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", f)
		}
	}
	return pool, nil
}

// ParseOverride reads one SUFFIX=HOST:PORT flag value.
func ParseOverride(s string) (suffix, addr string, err error) {
	suffix, addr, ok := strings.Cut(s, "=")
	if !ok || suffix == "" || addr == "" {
		return "", "", fmt.Errorf("host override %q: write SUFFIX=HOST:PORT, e.g. azsim.test=127.0.0.1:16600", s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", fmt.Errorf("host override %q: %s is not host:port", s, addr)
	}
	return suffix, addr, nil
}
