package httpclient

import (
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOverride(t *testing.T) {
	o := map[string]string{"azsim.test": "127.0.0.1:1", "vault.example": "127.0.0.1:2"}
	tests := []struct {
		host, want string
		ok         bool
	}{
		{"azsim.test", "127.0.0.1:1", true},
		{"kv1.vault.azsim.test", "127.0.0.1:1", true},
		{"KV1.Vault.Azsim.Test.", "127.0.0.1:1", true},
		{"notazsim.test", "", false}, // a suffix matches at a dot only
		{"azsim.test.evil.example", "", false},
		{"x.vault.example", "127.0.0.1:2", true},
	}
	for _, tt := range tests {
		if got, ok := Override(o, tt.host); got != tt.want || ok != tt.ok {
			t.Errorf("Override(%q) = %q, %v; want %q, %v", tt.host, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseOverride(t *testing.T) {
	if s, a, err := ParseOverride("azsim.test=127.0.0.1:16600"); err != nil || s != "azsim.test" || a != "127.0.0.1:16600" {
		t.Errorf("ParseOverride = %q %q %v", s, a, err)
	}
	for _, bad := range []string{"azsim.test", "=127.0.0.1:1", "azsim.test=", "azsim.test=127.0.0.1"} {
		if _, _, err := ParseOverride(bad); err == nil || !strings.Contains(err.Error(), "host override") {
			t.Errorf("ParseOverride(%q): %v", bad, err)
		}
	}
}

// TestTransport: a name under an overridden suffix is dialled at the
// override's address and verified against the CA file; with OnlyCAFiles
// and no CA file the same server is refused; a proxy from the environment
// is used unless NoProxy.
func TestTransport(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "host="+r.Host) }))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	addr := strings.TrimPrefix(srv.URL, "https://")

	// httptest's certificate names example.com and its subdomains.
	tr, err := NewTransport(Options{CAFiles: []string{ca}, OnlyCAFiles: true, Overrides: map[string]string{"example.com.": addr}, NoProxy: true})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Get("https://kv1.example.com/secrets")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "host=kv1.example.com" {
		t.Errorf("answer %q", body)
	}

	untrusting, err := NewTransport(Options{OnlyCAFiles: true, Overrides: map[string]string{"example.com": addr}, NoProxy: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&http.Client{Transport: untrusting}).Get("https://kv1.example.com/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a server no CA file vouches for: %v", err)
	}

	t.Setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
	t.Setenv("NO_PROXY", "")
	req, _ := http.NewRequest(http.MethodGet, "https://kv1.example.com/", nil)
	for noProxy, want := range map[bool]string{false: "http://proxy.invalid:3128", true: ""} {
		tr, _ := NewTransport(Options{NoProxy: noProxy})
		u, err := tr.Proxy(req)
		if got := ""; err == nil && u != nil {
			got = u.String()
			if got != want {
				t.Errorf("NoProxy %v: proxy %q, want %q", noProxy, got, want)
			}
		} else if want != "" {
			t.Errorf("NoProxy %v: no proxy (%v), want %q", noProxy, err, want)
		}
	}
}

func TestBadOptions(t *testing.T) {
	if _, err := NewTransport(Options{Overrides: map[string]string{"x": "nohostport"}}); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("bad override address: %v", err)
	}
	if _, err := NewTransport(Options{CAFiles: []string{"/nonexistent/ca.pem"}}); err == nil || !strings.Contains(err.Error(), "CA file") {
		t.Errorf("missing CA file: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, []byte("not pem"), 0o600)
	if _, err := NewTransport(Options{CAFiles: []string{empty}}); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("CA file without a certificate: %v", err)
	}
}
