package identity

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"golang.org/x/time/rate"
)

// IMDS allows a VM 5 concurrent requests and 20 per second; past that it
// answers 429. The provider keeps under both for all of a node's mounts.
const (
	imdsConcurrency = 5
	imdsPerSecond   = 20
)

// newIMDSClient sends the SDK's IMDS requests (always addressed to the
// link-local default) to endpoint, so that the endpoint is a flag and
// nothing is hard-wired to 169.254.169.254, and keeps them under IMDS's
// limits. Errors name the endpoint actually used.
func newIMDSClient(endpoint string, base http.RoundTripper) *http.Client {
	if base == nil {
		base = http.DefaultTransport
	}
	target, err := url.Parse(endpoint)
	if err != nil || target.Host == "" {
		target, _ = url.Parse(DefaultIMDS)
	}
	return &http.Client{Transport: &imdsTransport{target: target, base: base,
		sem: make(chan struct{}, imdsConcurrency), limit: rate.NewLimiter(imdsPerSecond, imdsConcurrency)}}
}

type imdsTransport struct {
	target *url.URL
	base   http.RoundTripper
	sem    chan struct{}
	limit  *rate.Limiter
}

// IMDSError is a failure to reach IMDS, naming the endpoint used.
type IMDSError struct {
	Endpoint string
	Err      error
}

func (e *IMDSError) Error() string { return fmt.Sprintf("IMDS at %s: %v", e.Endpoint, e.Err) }
func (e *IMDSError) Unwrap() error { return e.Err }

func (t *imdsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, &IMDSError{Endpoint: t.target.String(), Err: ctx.Err()}
	}
	defer func() { <-t.sem }()
	if err := t.limit.Wait(ctx); err != nil {
		return nil, &IMDSError{Endpoint: t.target.String(), Err: err}
	}
	req = req.Clone(ctx)
	req.URL.Scheme, req.URL.Host, req.Host = t.target.Scheme, t.target.Host, t.target.Host
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("no answer in time: %w", err)
		}
		return nil, &IMDSError{Endpoint: t.target.String(), Err: err}
	}
	return resp, nil
}
