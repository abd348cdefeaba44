package provider_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azure/provider"
)

// env is an azsim cloud plus a provider serving on a unix socket, talked
// to over real gRPC as the driver does.
type env struct {
	t        testing.TB
	sim      *azsim.Server
	cloudEnv string
	client   v1alpha1.CSIDriverProviderClient
	logs     *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newSim starts azsim and writes the AzureStackCloud file that points the
// provider at it.
func newSim(t testing.TB, cfg azsim.Config) (*azsim.Server, string) {
	t.Helper()
	cfg.DataDir = t.TempDir()
	s, err := azsim.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cloudEnv := filepath.Join(t.TempDir(), "azsim-cloud.json")
	data, _ := json.Marshal(map[string]string{"name": "AzureStackCloud", "activeDirectoryEndpoint": azsim.LoginURL + "/",
		"keyVaultEndpoint": azsim.VaultResource + "/", "keyVaultDNSSuffix": azsim.VaultDNSSuffix})
	if err := os.WriteFile(cloudEnv, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return s, cloudEnv
}

// startProvider runs the provider process's Run against sim, with IMDS
// and NMI endpoints as a node would have them.
func startProvider(t testing.TB, sim *azsim.Server, cloudEnv string, tune func(*provider.RunConfig)) *env {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "azure.sock")
	rc := provider.RunConfig{Endpoint: "unix://" + sock, CloudName: "AzureStackCloud", CloudEnvFile: cloudEnv,
		CAFiles: []string{sim.CAPath()}, HostOverrides: []string{azsim.HostSuffix + "=" + sim.Addr()},
		NMIEndpoint: "http://127.0.0.1:1", IMDSEndpoint: "http://127.0.0.1:1",
		ConstructPEMChain: true, CacheTTL: 2 * time.Minute, PerVault: 16, MountTimeout: 30 * time.Second}
	if tune != nil {
		tune(&rc)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Tests log everything (the canary tests read debug lines);
	// benchmarks only warnings, so that logs do not pile up in memory.
	level := slog.LevelDebug
	if _, bench := t.(*testing.B); bench {
		level = slog.LevelInfo
	}
	go func() {
		done <- provider.RunWithLogger(ctx, rc, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level})))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("provider Run: %v", err)
		}
	})
	// The socket file exists from bind(2) on, a moment before listen(2):
	// wait until it accepts a connection.
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if i > 500 {
			t.Fatal("provider socket never accepted a connection")
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{t: t, sim: sim, cloudEnv: cloudEnv, client: v1alpha1.NewCSIDriverProviderClient(conn), logs: logs}
}

// params is a SecretProviderClass's parameters plus kubelet's attributes.
type params map[string]string

func (e *env) baseParams(objects ...string) params {
	return params{
		"csi.storage.k8s.io/pod.name": "pod1", "csi.storage.k8s.io/pod.namespace": "default",
		"csi.storage.k8s.io/pod.uid": "uid-1", "csi.storage.k8s.io/serviceAccount.name": "default",
		"keyvaultName": "kv1", "tenantId": e.sim.TenantID(), "cloudName": "",
		"objects": objectsYAML(objects...),
	}
}

func objectsYAML(entries ...string) string {
	s := "array:\n"
	for _, e := range entries {
		s += "  - |\n"
		for _, line := range strings.Split(e, "\n") {
			s += "    " + line + "\n"
		}
	}
	return s
}

// mount calls Mount as the driver does for a first mount: JSON strings
// for attributes and secrets, the default permission 0644 as a JSON
// number, and no current object versions.
func (e *env) mount(p params, secrets map[string]string) (*v1alpha1.MountResponse, error) {
	return e.mountCtx(context.Background(), p, secrets, nil)
}

// republish calls Mount as the driver does for a rotation: with the
// volume's current object versions (those of prev).
func (e *env) republish(p params, secrets map[string]string, prev *v1alpha1.MountResponse) (*v1alpha1.MountResponse, error) {
	cur := prev.GetObjectVersion()
	if len(cur) == 0 {
		cur = []*v1alpha1.ObjectVersion{{Id: "secret/none", Version: "0"}}
	}
	return e.mountCtx(context.Background(), p, secrets, cur)
}

func (e *env) mountCtx(ctx context.Context, p params, secrets map[string]string, cur []*v1alpha1.ObjectVersion) (*v1alpha1.MountResponse, error) {
	a, _ := json.Marshal(p)
	s, _ := json.Marshal(secrets)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return e.client.Mount(ctx, &v1alpha1.MountRequest{Attributes: string(a), Secrets: string(s), TargetPath: "/tmp/unused", Permission: "420", CurrentObjectVersion: cur})
}

func admin(t testing.TB, s *azsim.Server, verb string, args any) map[string]any {
	t.Helper()
	out, err := s.Admin(context.Background(), verb, args)
	if err != nil {
		t.Fatalf("azsim %s: %v", verb, err)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// filesOf maps a response's files by path.
func filesOf(resp *v1alpha1.MountResponse) map[string]*v1alpha1.File {
	m := map[string]*v1alpha1.File{}
	for _, f := range resp.GetFiles() {
		m[f.Path] = f
	}
	return m
}
