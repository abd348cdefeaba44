package provider_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azure/provider"
)

// connectProxy is an HTTPS proxy (CONNECT tunnels) that sends every
// *.azsim.test tunnel to azsim and records the hosts it tunnelled to.
type connectProxy struct {
	url   string
	mu    sync.Mutex
	hosts []string
}

func newConnectProxy(t *testing.T, azsimAddr string) *connectProxy {
	p := &connectProxy{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || !strings.HasSuffix(r.URL.Hostname(), azsim.HostSuffix) {
			http.Error(w, "this proxy tunnels to azsim only", http.StatusForbidden)
			return
		}
		p.mu.Lock()
		p.hosts = append(p.hosts, r.URL.Hostname())
		p.mu.Unlock()
		upstream, err := net.Dial("tcp", azsimAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		client, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			upstream.Close()
			return
		}
		go func() { io.Copy(upstream, client); upstream.Close() }()
		go func() { io.Copy(client, upstream); client.Close() }()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	p.url = "http://" + ln.Addr().String()
	return p
}

func (p *connectProxy) tunnelled() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.hosts, ",")
}

// TestProxyEnvironment: HTTPS_PROXY carries Key Vault and Entra ID
// traffic, NO_PROXY exempts hosts, as the SDK honours them for upstream.
func TestProxyEnvironment(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "through-the-proxy")
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	grant(t, s, sp["appId"].(string))
	proxy := newConnectProxy(t, s.Addr())
	t.Setenv("HTTPS_PROXY", proxy.url)
	t.Setenv("NO_PROXY", "")
	e := startProvider(t, s, cloudEnv, nil)
	resp, err := e.mount(e.baseParams("objectName: secret1\nobjectType: secret"), spCreds(sp))
	if err != nil || string(filesOf(resp)["secret1"].Contents) != "through-the-proxy" {
		t.Fatalf("mount through the proxy: %v", err)
	}
	got := proxy.tunnelled()
	if !strings.Contains(got, "login."+azsim.HostSuffix) || !strings.Contains(got, "kv1.vault."+azsim.HostSuffix) {
		t.Errorf("the proxy tunnelled to %q; want Entra ID and the vault", got)
	}

	t.Setenv("NO_PROXY", "."+azsim.HostSuffix)
	direct := startProvider(t, s, cloudEnv, nil)
	before := proxy.tunnelled()
	if _, err := direct.mount(direct.baseParams("objectName: secret1\nobjectType: secret"), spCreds(sp)); err != nil {
		t.Fatal(err)
	}
	if proxy.tunnelled() != before {
		t.Errorf("NO_PROXY=.%s still went through the proxy", azsim.HostSuffix)
	}
}

// TestAzureEnvironmentFilepath: a class with cloudName AzureStackCloud and
// no cloudEnvFileName uses $AZURE_ENVIRONMENT_FILEPATH, as upstream does.
func TestAzureEnvironmentFilepath(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "stack")
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	grant(t, s, sp["appId"].(string))
	// Upstream's file has more fields than the four the provider reads.
	var env map[string]any
	b, _ := os.ReadFile(cloudEnv)
	json.Unmarshal(b, &env)
	env["managementPortalURL"], env["resourceManagerEndpoint"] = "https://portal.local.azurestack.external/", "https://management.local.azurestack.external/"
	full := filepath.Join(t.TempDir(), "azurestackcloud.json")
	b, _ = json.Marshal(env)
	os.WriteFile(full, b, 0o600)
	t.Setenv("AZURE_ENVIRONMENT_FILEPATH", full)
	e := startProvider(t, s, "", func(rc *provider.RunConfig) {
		rc.CloudEnvFile = os.Getenv("AZURE_ENVIRONMENT_FILEPATH")
		rc.CloudName = "AzurePublicCloud"
	})
	p := e.baseParams("objectName: secret1\nobjectType: secret")
	p["cloudName"] = "AzureStackCloud"
	resp, err := e.mount(p, spCreds(sp))
	if err != nil || string(filesOf(resp)["secret1"].Contents) != "stack" {
		t.Fatalf("mount: %v", err)
	}
}
