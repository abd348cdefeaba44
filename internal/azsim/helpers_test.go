package azsim_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"kvmount.dev/kvmount/internal/azsim"
)

// startServer runs an azsim on a free port with state in a temp dir.
func startServer(t *testing.T, cfg azsim.Config) *azsim.Server {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	s, err := azsim.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start azsim: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// admin runs an admin verb and fails the test on error.
func admin(t *testing.T, s *azsim.Server, verb string, args any) map[string]any {
	t.Helper()
	out, err := s.Admin(context.Background(), verb, args)
	if err != nil {
		t.Fatalf("azsim %s: %v", verb, err)
	}
	return out
}

// clientOptions changes nothing in the SDK but its transport.
func clientOptions(s *azsim.Server) azcore.ClientOptions {
	return azcore.ClientOptions{Transport: s.HTTPClient()}
}

// spCredential is a ClientSecretCredential against azsim's Entra ID.
func spCredential(t *testing.T, s *azsim.Server, sp map[string]any) azcore.TokenCredential {
	t.Helper()
	opts := &azidentity.ClientSecretCredentialOptions{ClientOptions: clientOptions(s), DisableInstanceDiscovery: true}
	opts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: azsim.LoginURL + "/"}
	cred, err := azidentity.NewClientSecretCredential(sp["tenant"].(string), sp["appId"].(string), sp["password"].(string), opts)
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

// redirect sends every request to target: how a client reaches an IMDS
// endpoint other than the link-local default without touching the network.
type redirect struct {
	target *url.URL
	base   http.RoundTripper
}

func (r redirect) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host, req.Host = r.target.Scheme, r.target.Host, r.target.Host
	return r.base.RoundTrip(req)
}

// miCredential is a ManagedIdentityCredential whose IMDS is imdsURL.
func miCredential(t *testing.T, imdsURL string, id azidentity.ManagedIDKind) azcore.TokenCredential {
	t.Helper()
	u, err := url.Parse(imdsURL)
	if err != nil {
		t.Fatal(err)
	}
	opts := &azidentity.ManagedIdentityCredentialOptions{ID: id}
	opts.Transport = &http.Client{Transport: redirect{target: u, base: http.DefaultTransport}}
	opts.Retry = policy.RetryOptions{MaxRetries: -1}
	cred, err := azidentity.NewManagedIdentityCredential(opts)
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func secretsClient(t *testing.T, s *azsim.Server, vault string, cred azcore.TokenCredential) *azsecrets.Client {
	t.Helper()
	opts := &azsecrets.ClientOptions{ClientOptions: clientOptions(s)}
	opts.Retry = policy.RetryOptions{MaxRetries: -1}
	c, err := azsecrets.NewClient(azsim.VaultURL(vault), cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }
