package azsim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// NewTransport returns an HTTP transport that trusts azsim's CA (the PEM
// file at caPath) and dials every *.azsim.test host at addr, so that vault
// URLs stay https://<vault>.vault.azsim.test with no port and no DNS entry.
// Any other host is dialled normally.
func NewTransport(addr, caPath string) (*http.Transport, error) {
	pem, err := os.ReadFile(caPath)
	if err != nil {
		return nil, fmt.Errorf("azsim CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("azsim CA %s: no certificate in it", caPath)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, hostport string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(hostport)
			if err == nil && IsAzsimHost(host) {
				hostport = addr
			}
			return dialer.DialContext(ctx, network, hostport)
		},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}, nil
}

// IsAzsimHost reports whether host is one of azsim's names.
func IsAzsimHost(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == HostSuffix || strings.HasSuffix(host, "."+HostSuffix)
}

// HTTPClient returns a client for this server (see NewTransport).
func (s *Server) HTTPClient() *http.Client {
	t, err := NewTransport(s.Addr(), s.CAPath())
	if err != nil {
		// The CA was written by this server moments ago; failing to read
		// it back means the data dir is gone, and every request will say so.
		return &http.Client{Transport: errTransport{err}}
	}
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

type errTransport struct{ err error }

func (e errTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, e.err }
