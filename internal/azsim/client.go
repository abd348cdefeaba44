package azsim

import (
	"fmt"
	"net/http"
	"time"

	"kvmount.dev/kvmount/internal/httpclient"
)

// NewTransport returns an HTTP transport that trusts azsim's CA (the PEM
// file at caPath) and dials every *.azsim.test host at addr, so that vault
// URLs stay https://<vault>.vault.azsim.test with no port and no DNS entry.
// Any other host is dialled normally.
func NewTransport(addr, caPath string) (*http.Transport, error) {
	t, err := httpclient.NewTransport(httpclient.Options{CAFiles: []string{caPath}, OnlyCAFiles: true, Overrides: map[string]string{HostSuffix: addr}})
	if err != nil {
		return nil, fmt.Errorf("azsim transport: %w", err)
	}
	t.Proxy = nil // azsim is on loopback
	return t, nil
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
