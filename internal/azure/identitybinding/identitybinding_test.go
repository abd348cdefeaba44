package identitybinding

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kvmount.dev/kvmount/internal/pki"
)

// TestSNIName checks the proxy's server name against values computed with
// an independent implementation of the rule (Python's base64.b32hexencode
// of sha256("identity-binding" + id), lower-cased, no padding).
func TestSNIName(t *testing.T) {
	for id, want := range map[string]string{
		"5f3c2a1b0e9d8c7b6a5f4e3d": "a5kb5mkbq4ago161h32u5ithg5mfenfs7bvenet59igfvvrlmig8g.ests.aks",
		"abc":                      "ar47lgcnhtn52tohpbtporqbc5cjfjah6gmfdpri09hpae1b0v370.ests.aks",
	} {
		if got := SNIName(id); got != want {
			t.Errorf("SNIName(%q) = %s, want %s", id, got, want)
		}
	}
}

func TestSNIFromNames(t *testing.T) {
	aks := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
		"hcp-kubernetes.5f3c2a1b0e9d8c7b6a5f4e3d.svc.cluster.local", "myaks-dns-12345678.hcp.westus2.azmk8s.io"}
	got, err := SNIFromNames(aks)
	if err != nil || got != SNIName("5f3c2a1b0e9d8c7b6a5f4e3d") {
		t.Fatalf("AKS names: %q %v", got, err)
	}
	if _, err := SNIFromNames([]string{"kubernetes", "localhost"}); err == nil || !strings.Contains(err.Error(), "--sni-name") {
		t.Fatalf("a non-AKS API server: %v", err)
	}
}

func TestProxyURL(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"http://proxy.example", "https only"},
		{"https://u:p@proxy.example", "scheme, host and path only"},
		{"https://proxy.example/?a=b", "scheme, host and path only"},
	} {
		if _, err := parseProxyURL(tt.url); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.url, err, tt.want)
		}
	}
}

// TestTransport: every request goes to the proxy under its path, with the
// server name computed from the API server's certificate, trusting only
// the cluster's CA.
func TestTransport(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir, "cluster CA")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(ca.CertPath)
	if err != nil {
		t.Fatal(err)
	}
	const id = "0123456789abcdef01234567"
	sni := SNIName(id)
	serve := func(name string, names []string, h http.Handler) *httptest.Server {
		certPath, keyPath, err := ca.Issue(dir, name, pki.Spec{CommonName: names[0], DNSNames: names, Server: true})
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(h)
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv
	}
	var seen struct{ path, query, sni string }
	proxy := serve("proxy", []string{sni}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.path, seen.query, seen.sni = r.URL.Path, r.URL.RawQuery, r.TLS.ServerName
	}))
	api := serve("apiserver", []string{"localhost", "hcp-kubernetes." + id + ".svc.cluster.local"}, http.NotFoundHandler())
	apiURL := strings.Replace(api.URL, "127.0.0.1", "localhost", 1)

	tr, err := New(Config{ProxyURL: proxy.URL + "/base", APIServer: apiURL, CAData: caPEM}).Transport(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "https://login.microsoftonline.com/tenant/oauth2/v2.0/token?x=1", nil)
	resp, err := tr.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if seen.path != "/base/tenant/oauth2/v2.0/token" || seen.query != "x=1" || seen.sni != sni {
		t.Errorf("the proxy saw path %q query %q server name %q", seen.path, seen.query, seen.sni)
	}

	// A proxy whose certificate another CA signed is not trusted.
	other, err := pki.LoadOrCreateCA(t.TempDir(), "other CA")
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, _ := os.ReadFile(other.CertPath)
	bad, err := New(Config{ProxyURL: proxy.URL, SNIName: sni, CAData: otherPEM}).Transport(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := bad.Do(req.Clone(context.Background())); err == nil {
		resp.Body.Close()
		t.Error("a proxy the cluster's CA did not sign was trusted")
	}
	// Without a CA there is no proxy to trust.
	if _, err := New(Config{ProxyURL: proxy.URL}).Transport(context.Background()); !errors.Is(err, ErrNotConfigured) {
		t.Errorf("no CA: %v", err)
	}
}

// TestDiscoveryOnceWithBackoff: concurrent first uses discover the proxy
// once; a failed discovery is not retried by every mount but after a
// backoff, and succeeds once the API server answers.
func TestDiscoveryOnceWithBackoff(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var dials atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			c.Close() // no TLS: discovery fails
		}
	}()
	ca, err := pki.LoadOrCreateCA(t.TempDir(), "cluster CA")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(ca.CertPath)
	now := time.Unix(1_900_000_000, 0)
	p := New(Config{APIServer: "https://" + l.Addr().String(), CAData: caPEM, Now: func() time.Time { return now }})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if err := p.Ready(context.Background()); err == nil {
				t.Error("discovery against a server without TLS succeeded")
			}
		})
	}
	wg.Wait()
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials for 10 concurrent mounts, want 1", n)
	}
	for range 5 {
		_ = p.Ready(context.Background())
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials: mounts within the backoff retried discovery", n)
	}
	now = now.Add(2 * time.Second)
	_ = p.Ready(context.Background())
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials after the backoff, want 2", n)
	}
}

// TestCARotation: the provider's CA file is read again when it changes, as
// kubelet rotates a projected service account's ca.crt: a proxy whose new
// certificate the new CA signed is trusted without restarting the
// provider, by the same transport a credential already holds.
func TestCARotation(t *testing.T) {
	dir := t.TempDir()
	oldCA, err := pki.LoadOrCreateCA(t.TempDir(), "old CA")
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := pki.LoadOrCreateCA(t.TempDir(), "new CA")
	if err != nil {
		t.Fatal(err)
	}
	sni := SNIName("0123456789abcdef01234567")
	certOf := func(ca *pki.CA, name string) tls.Certificate {
		certPath, keyPath, err := ca.Issue(dir, name, pki.Spec{CommonName: sni, DNSNames: []string{sni}, Server: true})
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var current atomic.Pointer[tls.Certificate]
	oldCert, newCert := certOf(oldCA, "old-proxy"), certOf(newCA, "new-proxy")
	current.Store(&oldCert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return current.Load(), nil }}
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(dir, "ca.crt")
	copyFile(t, oldCA.CertPath, caFile)

	tr, err := New(Config{ProxyURL: srv.URL, SNIName: sni, CAFile: caFile}).Transport(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	call := func() error {
		req, _ := http.NewRequest(http.MethodPost, "https://login.microsoftonline.com/t/oauth2/v2.0/token", nil)
		resp, err := tr.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := call(); err != nil {
		t.Fatalf("before the rotation: %v", err)
	}
	current.Store(&newCert)
	srv.CloseClientConnections()
	if err := call(); err == nil {
		t.Fatal("a proxy certificate from the new CA was trusted before the CA file changed")
	}
	copyFile(t, newCA.CertPath, caFile)
	if err := call(); err != nil {
		t.Fatalf("after the CA file rotated: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// A new file renamed into place, as kubelet's atomic writer does.
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}
