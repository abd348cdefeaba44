package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
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
	// The slot is IMDS's: a request is in flight until its answer has
	// been read, not only its headers (a token answer can be streamed
	// after them), so the slot is given back when the body is closed.
	release := sync.OnceFunc(func() { <-t.sem })
	if err := t.limit.Wait(ctx); err != nil {
		release()
		return nil, &IMDSError{Endpoint: t.target.String(), Err: err}
	}
	req = req.Clone(ctx)
	req.URL.Scheme, req.URL.Host, req.Host = t.target.Scheme, t.target.Host, t.target.Host
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		release()
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("no answer in time: %w", err)
		}
		return nil, &IMDSError{Endpoint: t.target.String(), Err: err}
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: release}
	return resp, nil
}

// releasingBody gives its request's IMDS slot back when closed.
type releasingBody struct {
	io.ReadCloser
	release func()
}

func (b *releasingBody) Close() error {
	defer b.release()
	return b.ReadCloser.Close()
}

// imdsCredential is one VM managed identity's token source: IMDS's token
// endpoint, asked for that identity, its tokens cached in the credential
// itself. (The SDK's managed-identity credential caches tokens in one
// process-wide store that nothing ever empties: identities the provider has
// long forgotten would keep their tokens there, and two sources in one
// process would share them.) Transient answers (404, 410, 429, 5xx) are
// retried as IMDS's documentation asks, within the caller's deadline.
type imdsCredential struct {
	client *http.Client
	// param and id select a user-assigned identity (client_id or
	// msi_res_id); empty param is the system-assigned one.
	param, id string
	endpoint  string

	mu     sync.Mutex // guards tokens
	tokens map[string]azcore.AccessToken
}

// IMDSRefusal is an IMDS answer other than a token.
type IMDSRefusal struct {
	Endpoint string
	Status   int
	// Description is IMDS's error_description (never a token).
	Description string
}

func (e *IMDSRefusal) Error() string {
	return fmt.Sprintf("IMDS (%s) answered %d %s: %s", e.Endpoint, e.Status, http.StatusText(e.Status), e.Description)
}

// Transient reports whether IMDS may answer differently if asked again.
func (e *IMDSRefusal) Transient() bool {
	switch e.Status {
	case http.StatusNotFound, http.StatusGone, http.StatusTooManyRequests:
		return true
	}
	return e.Status >= 500
}

func newIMDSCredential(client *http.Client, endpoint, id string) *imdsCredential {
	c := &imdsCredential{client: client, endpoint: endpoint, tokens: map[string]azcore.AccessToken{}}
	switch {
	case id == "":
	case strings.HasPrefix(strings.ToLower(id), "/subscriptions/"):
		c.param, c.id = "msi_res_id", id
	default:
		c.param, c.id = "client_id", id
	}
	return c
}

// imdsRetries and imdsRetryDelay pace retries of transient answers.
const (
	imdsRetries    = 3
	imdsRetryDelay = time.Second
)

// GetToken implements azcore.TokenCredential.
func (c *imdsCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if len(opts.Scopes) != 1 {
		return azcore.AccessToken{}, fmt.Errorf("IMDS tokens are for one scope, got %d", len(opts.Scopes))
	}
	resource := strings.TrimSuffix(opts.Scopes[0], "/.default")
	c.mu.Lock()
	tok, ok := c.tokens[resource]
	c.mu.Unlock()
	if ok && time.Until(tok.ExpiresOn) > 5*time.Minute {
		return tok, nil
	}
	var err error
	for attempt := 0; ; attempt++ {
		if tok, err = c.request(ctx, resource); err == nil {
			c.mu.Lock()
			c.tokens[resource] = tok
			c.mu.Unlock()
			return tok, nil
		}
		var r *IMDSRefusal
		if attempt == imdsRetries || !errors.As(err, &r) || !r.Transient() {
			return azcore.AccessToken{}, err
		}
		select {
		case <-ctx.Done():
			return azcore.AccessToken{}, err
		case <-time.After(imdsRetryDelay << attempt):
		}
	}
}

// request asks IMDS for one token.
func (c *imdsCredential) request(ctx context.Context, resource string) (azcore.AccessToken, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	q := url.Values{"api-version": {"2018-02-01"}, "resource": {resource}}
	if c.param != "" {
		q.Set(c.param, c.id)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, DefaultIMDS+"/metadata/identity/oauth2/token?"+q.Encode(), nil)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	req.Header.Set("Metadata", "true")
	resp, err := c.client.Do(req)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return azcore.AccessToken{}, &IMDSRefusal{Endpoint: c.endpoint, Status: resp.StatusCode, Description: imdsDescription(body)}
	}
	return parseIMDSToken(body)
}

// imdsDescription is IMDS's error_description, or the body's first line.
func imdsDescription(body []byte) string {
	var e struct {
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) == nil && e.Description != "" {
		return e.Description
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if len(line) > 300 {
		line = line[:300]
	}
	return line
}

// parseIMDSToken reads IMDS's token answer, whose numbers are strings.
func parseIMDSToken(body []byte) (azcore.AccessToken, error) {
	var t struct {
		AccessToken string `json:"access_token"`
		ExpiresOn   string `json:"expires_on"`
		ExpiresIn   string `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &t); err != nil || t.AccessToken == "" {
		return azcore.AccessToken{}, errors.New("IMDS answered 200 without a token")
	}
	if on, err := strconv.ParseInt(t.ExpiresOn, 10, 64); err == nil && on > 0 {
		return azcore.AccessToken{Token: t.AccessToken, ExpiresOn: time.Unix(on, 0)}, nil
	}
	if in, err := strconv.ParseInt(t.ExpiresIn, 10, 64); err == nil && in > 0 {
		return azcore.AccessToken{Token: t.AccessToken, ExpiresOn: time.Now().Add(time.Duration(in) * time.Second)}, nil
	}
	return azcore.AccessToken{}, errors.New("IMDS answered a token without an expiry")
}
