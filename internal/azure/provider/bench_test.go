package provider_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"kvmount.dev/kvmount/internal/bench"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azure/provider"
)

// benchEnv is a vault of ten secrets behind 20 ms of injected latency.
func benchEnv(b *testing.B, cacheTTL time.Duration) (*env, params, map[string]string) {
	s, cloudEnv := newSim(b, azsim.Config{Latency: 20 * time.Millisecond})
	admin(b, s, "keyvault create", azsim.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	var objs []string
	for i := range 10 {
		admin(b, s, "keyvault secret set", azsim.SecretArgs{VaultName: "kv1", Name: fmt.Sprintf("s%d", i), Value: "value"})
		objs = append(objs, fmt.Sprintf("objectName: s%d\nobjectType: secret", i))
	}
	sp := admin(b, s, "ad sp create-for-rbac", azsim.SPArgs{})
	grant(b, s, sp["appId"].(string))
	e := startProvider(b, s, cloudEnv, func(rc *provider.RunConfig) { rc.CacheTTL, rc.Debug = cacheTTL, false })
	p := e.baseParams(objs...)
	creds := spCreds(sp)
	if _, err := e.mount(p, creds); err != nil { // warm: token, challenge, connections
		b.Fatal(err)
	}
	return e, p, creds
}

// BenchmarkMount10Objects measures a warm 10-object mount against azsim with
// 20 ms latency per Key Vault request and the node cache off: every mount
// reads all ten objects, in parallel. Target: under 2× the latency (40 ms).
func BenchmarkMount10Objects(b *testing.B) {
	e, p, creds := benchEnv(b, 0)
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.mount(p, creds); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(e.sim.KeyVault().Stats("kv1").Gets)/float64(b.N+1), "kv-reads/mount")
}

// BenchmarkMount10ObjectsCached is the same with the node cache on, as in
// a rotation poll where other pods of the principal already read the
// objects.
func BenchmarkMount10ObjectsCached(b *testing.B) {
	e, p, creds := benchEnv(b, time.Hour)
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.mount(p, creds); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(e.sim.KeyVault().Stats("kv1").Gets)/float64(b.N+1), "kv-reads/mount")
}

// TestBenchDrivesProvider runs kvmount's bench against the provider over
// its socket: every mount counted, none failed, and Key Vault requests per
// mount read from azsim's counter: one per object, with the cache off and
// one mount at a time (concurrent mounts would coalesce identical reads).
func TestBenchDrivesProvider(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	admin(t, s, "keyvault create", azsim.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	var objs []string
	for i := range 3 {
		admin(t, s, "keyvault secret set", azsim.SecretArgs{VaultName: "kv1", Name: fmt.Sprintf("s%d", i), Value: "v"})
		objs = append(objs, fmt.Sprintf("objectName: s%d\nobjectType: secret", i))
	}
	sp := admin(t, s, "ad sp create-for-rbac", azsim.SPArgs{})
	grant(t, s, sp["appId"].(string))
	sock := ""
	e := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.CacheTTL, sock = 0, rc.Endpoint })
	if _, err := e.mount(e.baseParams(objs...), spCreds(sp)); err != nil { // warm up: token and challenge
		t.Fatal(err)
	}
	a, _ := json.Marshal(e.baseParams(objs...))
	sec, _ := json.Marshal(spCreds(sp))
	res, err := bench.Run(context.Background(), bench.Config{Endpoint: sock, Concurrency: 1, Count: 20,
		Request:    &v1alpha1.MountRequest{Attributes: string(a), Secrets: string(sec), Permission: "420"},
		KVRequests: func(context.Context) (uint64, error) { return s.KeyVault().Stats("kv1").Requests, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mounts != 20 || len(res.Errors) != 0 || res.KVPerMount != 3 || res.P50 <= 0 {
		t.Errorf("bench result %+v, want 20 mounts, no errors, 3 Key Vault requests per mount", res)
	}
}
