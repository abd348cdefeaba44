package csi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	v1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	"kvmount.dev/kvmount/internal/atomicdir"
)

// TestFailuresKeepOrCleanUp: a failed first mount returns the provider's
// code and leaves nothing mounted; a failed refresh keeps the last good
// files, reports success to kubelet and records a SecretRotationFailed
// event; a successful refresh rewrites and records SecretRotationComplete.
func TestFailuresKeepOrCleanUp(t *testing.T) {
	td := newTestDriver(t, nil)
	r := td.req("vol", nil)
	td.prov.set(fails(status.Error(codes.PermissionDenied, `identity x may not read secret "s"`)))
	if err := td.publish(r); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("first mount: %v, want the provider's PermissionDenied", err)
	}
	if ok, _ := atomicdir.Mounted(r.TargetPath); ok {
		t.Fatal("a failed first mount left the tmpfs mounted")
	}
	td.prov.set(serves("v1"))
	if err := td.publish(r); err != nil || td.read(r, "s") != "v1" {
		t.Fatalf("mount: %v, content %q", err, td.read(r, "s"))
	}
	td.prov.set(fails(status.Error(codes.PermissionDenied, "denied")))
	td.now = td.now.Add(2 * time.Minute)
	if err := td.publish(r); err != nil || td.read(r, "s") != "v1" {
		t.Fatalf("failed refresh: %v (want success reported), content %q (want v1 kept)", err, td.read(r, "s"))
	}
	td.prov.set(serves("v2"))
	td.now = td.now.Add(2 * time.Minute)
	if err := td.publish(r); err != nil || td.read(r, "s") != "v2" {
		t.Fatalf("refresh: %v, content %q", err, td.read(r, "s"))
	}
	if got := strings.Join(td.events(), ","); got != "SecretRotationFailed×1,SecretRotationComplete×1" {
		t.Errorf("events %s", got)
	}
}

// TestEmptyTmpfsIsNotAMount: a tmpfs mounted without its payload (the
// driver died between mounting and writing, or a clean-up unmount failed)
// is not reported as published: kubelet's retry mounts it for real, and if
// that fails it fails and cleans up, instead of a pod starting with an
// empty volume.
func TestEmptyTmpfsIsNotAMount(t *testing.T) {
	td := newTestDriver(t, func(c *Config) { c.Rotation = false })
	r := td.req("vol", nil)
	if err := atomicdir.MountTmpfs(r.TargetPath); err != nil {
		t.Fatal(err)
	}
	td.prov.set(fails(status.Error(codes.NotFound, "secret1 does not exist")))
	if err := td.publish(r); status.Code(err) != codes.NotFound {
		t.Fatalf("publish over an empty tmpfs: %v, want the provider's failure", err)
	}
	if ok, _ := atomicdir.Mounted(r.TargetPath); ok {
		t.Error("the empty tmpfs is still mounted after the failed mount")
	}
	if err := atomicdir.MountTmpfs(r.TargetPath); err != nil {
		t.Fatal(err)
	}
	td.prov.set(serves("v1"))
	if err := td.publish(r); err != nil || td.read(r, "s") != "v1" {
		t.Fatalf("publish over an empty tmpfs: %v, content %q", err, td.read(r, "s"))
	}
}

// TestPodCannotRewriteClass: volumeAttributes other than
// secretProviderClass never reach the provider (upstream merged them over
// the class's parameters); the pod gets one Warning Event naming them.
func TestPodCannotRewriteClass(t *testing.T) {
	td := newTestDriver(t, nil)
	r := td.req("vol", map[string]string{"keyvaultName": "attackers-vault", "useVMManagedIdentity": "true"})
	for range 2 {
		if err := td.publish(r); err != nil {
			t.Fatal(err)
		}
		td.now = td.now.Add(2 * time.Minute)
	}
	attrs := td.prov.last().GetAttributes()
	if !strings.Contains(attrs, `"keyvaultName":"class-vault"`) || strings.Contains(attrs, "attackers-vault") || strings.Contains(attrs, "useVMManagedIdentity") {
		t.Errorf("the provider got the pod's attributes: %s", attrs)
	}
	for _, k := range []string{"csi.storage.k8s.io/pod.name", "csi.storage.k8s.io/pod.uid", "csi.storage.k8s.io/ephemeral"} {
		if !strings.Contains(attrs, k) {
			t.Errorf("kubelet's %s was not passed on", k)
		}
	}
	if got := td.events(); !slices.Equal(got, []string{"IgnoredVolumeAttributes×1"}) {
		t.Errorf("events %v, want one IgnoredVolumeAttributes", got)
	}
	if msg := td.eventMessages(); !strings.Contains(msg, "keyvaultName, useVMManagedIdentity ignored") {
		t.Errorf("event message %q does not name the ignored attributes", msg)
	}
}

// TestRepeatedFailureOneEvent: a refresh failing poll after poll updates
// one Event's count rather than creating an Event per poll; a failed first
// mount records no Event of the driver's (kubelet records its error, with
// the class named, as FailedMount: two Events would say the same).
func TestRepeatedFailureOneEvent(t *testing.T) {
	td := newTestDriver(t, nil)
	r := td.req("vol", nil)
	td.prov.set(fails(status.Error(codes.NotFound, "secret1 does not exist")))
	err := td.publish(r)
	if got := td.events(); len(got) != 0 || !strings.Contains(status.Convert(err).Message(), "SecretProviderClass spc: secret1 does not exist") {
		t.Fatalf("failed first mount: events %v, error %v; want no Event and an error naming the class", got, err)
	}
	td.prov.set(serves("v1"))
	if err := td.publish(r); err != nil {
		t.Fatal(err)
	}
	td.prov.set(fails(status.Error(codes.NotFound, "secret1 does not exist")))
	for range 5 {
		td.now = td.now.Add(2 * time.Minute)
		td.publish(r)
	}
	if got := td.events(); !slices.Equal(got, []string{"SecretRotationFailed×5"}) {
		t.Errorf("events %v, want one SecretRotationFailed with count 5", got)
	}
	td.prov.set(fails(status.Error(codes.NotFound, "another reason")))
	td.now = td.now.Add(2 * time.Minute)
	td.publish(r)
	if got := td.events(); len(got) != 2 {
		t.Errorf("events %v: a different message must be its own Event", got)
	}
}

// TestRotatedOutSecretLeaves: after a rotation the old payload, holding
// the old secret, is removed once the grace has passed, with no further
// write.
func TestRotatedOutSecretLeaves(t *testing.T) {
	td := newTestDriver(t, nil)
	r := td.req("vol", nil)
	td.prov.set(serves("old-secret-value"))
	if err := td.publish(r); err != nil {
		t.Fatal(err)
	}
	td.prov.set(serves("new-secret-value"))
	td.now = td.now.Add(2 * time.Minute)
	if err := td.publish(r); err != nil || td.read(r, "s") != "new-secret-value" {
		t.Fatalf("rotation: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		found := false
		filepath.WalkDir(r.TargetPath, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if b, _ := os.ReadFile(p); string(b) == "old-secret-value" {
					found = true
				}
			}
			return nil
		})
		if !found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the rotated-out secret is still in the volume 5 s after the rotation")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestProviderCodes: a provider's gRPC code and message pass through
// (Unknown stays Unknown: final for kubelet, not "maybe in progress"); a
// response over the size limit names the flag; a stalled provider's
// deadline names the provider and the class.
func TestProviderCodes(t *testing.T) {
	tests := []struct {
		name     string
		tune     func(*Config)
		answer   func(*v1alpha1.MountRequest) (*v1alpha1.MountResponse, error)
		wantCode codes.Code
		wantMsg  string
	}{
		{"unknown passes", nil, fails(errors.New("failed to mount objects, error: boom")), codes.Unknown, "boom"},
		{"permission denied passes", nil, fails(status.Error(codes.PermissionDenied, "no access")), codes.PermissionDenied, "no access"},
		{"too large", nil, func(*v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
			return &v1alpha1.MountResponse{Files: []*v1alpha1.File{{Path: "big", Mode: 0o644, Contents: make([]byte, 2<<20)}}}, nil
		}, codes.ResourceExhausted, "--max-call-recv-msg-size"},
		{"stalled", func(c *Config) { c.ProviderTimeout = 300 * time.Millisecond }, func(*v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
			time.Sleep(time.Second)
			return nil, errors.New("too late")
		}, codes.DeadlineExceeded, "provider script did not answer within 300ms for SecretProviderClass default/spc (pod default/p)"},
		{"provider error code", nil, func(*v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
			return &v1alpha1.MountResponse{Error: &v1alpha1.Error{Code: "GRPCProviderError"}}, nil
		}, codes.Internal, "error code GRPCProviderError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			td := newTestDriver(t, func(c *Config) {
				c.Providers = nil
				if tt.tune != nil {
					tt.tune(c)
				}
			})
			td.node.d.cfg.Providers = providersWithLimit(td.dir, 1<<20)
			td.prov.set(tt.answer)
			err := td.publish(td.req("vol", nil))
			st := status.Convert(err)
			if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantMsg) {
				t.Errorf("got %v %q, want %v containing %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
		})
	}
}

// TestClassesFromCache: with the watch-fed class cache, a hundred mounts
// read no class from the API server and write one status object each.
func TestClassesFromCache(t *testing.T) {
	td := newTestDriver(t, nil)
	classes := NewClasses(td.dyn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	classes.Start(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), classes.Synced) {
		t.Fatal("the class cache never synced")
	}
	td.node.d.cfg.Classes = classes
	td.dyn.ClearActions()
	for i := range 100 {
		r := td.req("vol-"+strings.Repeat("x", i%3)+string(rune('a'+i%26))+time.Duration(i).String(), map[string]string{"csi.storage.k8s.io/pod.name": "p" + time.Duration(i).String()})
		if err := td.publish(r); err != nil {
			t.Fatal(err)
		}
	}
	calls := td.apiCalls()
	if calls["get secretproviderclasses"] != 0 || calls["create secretproviderclasspodstatuses"] != 100 || len(calls) != 1 {
		t.Errorf("API requests for 100 mounts: %v; want only 100 status creates", calls)
	}
}

// TestQuietByDefault: at the default level a successful mount and an
// unchanged refresh log nothing; a failure and a rotation do.
func TestQuietByDefault(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	td := newTestDriver(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return logs.Write(p)
		}), &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	r := td.req("vol", nil)
	for range 3 {
		if err := td.publish(r); err != nil {
			t.Fatal(err)
		}
		td.now = td.now.Add(2 * time.Minute)
	}
	mu.Lock()
	quiet := logs.Len()
	mu.Unlock()
	if quiet != 0 {
		t.Errorf("successful mounts logged at the default level: %s", logs.String())
	}
	td.prov.set(serves("v2"))
	td.publish(r)
	td.prov.set(fails(status.Error(codes.NotFound, "gone")))
	td.publish(td.req("other", nil))
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "rotated") || !strings.Contains(logs.String(), "publish failed") {
		t.Errorf("a rotation and a failure must be logged: %q", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestNoRetryOfProviderFailures: the driver calls the provider once per
// publish, also when it answers Unavailable: the provider retried what
// was worth retrying, and kubelet retries the mount.
func TestNoRetryOfProviderFailures(t *testing.T) {
	td := newTestDriver(t, nil)
	td.prov.set(fails(status.Error(codes.Unavailable, `key vault "kv" answered 503`)))
	err := td.publish(td.req("vol", nil))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v", err)
	}
	td.prov.mu.Lock()
	defer td.prov.mu.Unlock()
	if n := len(td.prov.requests); n != 1 {
		t.Errorf("the provider was called %d times for one publish", n)
	}
}

// TestVolumeStateBounded: the driver keeps state only for mounted volumes.
// A hundred pods whose first mount fails with a final code (kubelet never
// unpublishes them) leave nothing behind; a mounted volume is kept, also
// across a failed refresh, until it is unpublished.
func TestVolumeStateBounded(t *testing.T) {
	td := newTestDriver(t, nil)
	td.prov.set(fails(status.Error(codes.PermissionDenied, "denied")))
	for i := range 100 {
		if err := td.publish(td.req(fmt.Sprintf("failed-%d", i), nil)); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("mount %d: %v", i, err)
		}
	}
	if n := td.node.d.tracked(); n != 0 {
		t.Fatalf("%d volume states kept after 100 failed first mounts, want 0", n)
	}
	td.prov.set(serves("v1"))
	r := td.req("ok", nil)
	if err := td.publish(r); err != nil {
		t.Fatal(err)
	}
	td.prov.set(fails(status.Error(codes.PermissionDenied, "denied")))
	td.now = td.now.Add(2 * time.Minute)
	if err := td.publish(r); err != nil {
		t.Fatal(err)
	}
	if n := td.node.d.tracked(); n != 1 {
		t.Fatalf("%d volume states with one mounted volume after a failed refresh, want 1", n)
	}
	if _, err := td.node.NodeUnpublishVolume(context.Background(), &csipb.NodeUnpublishVolumeRequest{VolumeId: "ok", TargetPath: r.TargetPath}); err != nil {
		t.Fatal(err)
	}
	if n := td.node.d.tracked(); n != 0 {
		t.Fatalf("%d volume states after unpublishing the last volume, want 0", n)
	}
}

// TestVolumeTmpfsSized: a volume's tmpfs is sized from the driver's
// --max-call-recv-msg-size and mounted noexec.
func TestVolumeTmpfsSized(t *testing.T) {
	td := newTestDriver(t, func(c *Config) { c.MaxPayload = 1 << 20 })
	r := td.req("vol", nil)
	if err := td.publish(r); err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(r.TargetPath, &st); err != nil {
		t.Fatal(err)
	}
	if size := int64(st.Blocks) * st.Bsize; size != atomicdir.TmpfsSize(1<<20) || st.Flags&0x8 == 0 {
		t.Errorf("tmpfs of %d bytes, flags %#x; want %d bytes and noexec", size, st.Flags, atomicdir.TmpfsSize(1<<20))
	}
}

// TestProviderLabelBounded: classes naming providers that are not
// installed on the node count under "other": a class's spec.provider
// cannot add label values at will.
func TestProviderLabelBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	td := newTestDriver(t, func(c *Config) { c.Metrics = NewMetrics(reg) })
	for i := range 20 {
		spc := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
			"metadata": map[string]any{"name": fmt.Sprintf("c%d", i), "namespace": "default"}, "spec": map[string]any{"provider": fmt.Sprintf("made-up-%d", i)}}}
		if _, err := td.dyn.Resource(v1.SecretProviderClassResource).Namespace("default").Create(context.Background(), spc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		r := td.req(fmt.Sprintf("v%d", i), map[string]string{"secretProviderClass": fmt.Sprintf("c%d", i)})
		if err := td.publish(r); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("class naming an absent provider: %v", err)
		}
	}
	if err := td.publish(td.req("ok", nil)); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "provider" {
					labels[l.GetValue()] = true
				}
			}
		}
	}
	if len(labels) != 2 || !labels["other"] || !labels["script"] {
		t.Errorf("provider label values %v, want only other and script", labels)
	}
}
