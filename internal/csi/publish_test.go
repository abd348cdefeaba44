package csi

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	v1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	"kvmount.dev/kvmount/internal/atomicdir"
	"kvmount.dev/kvmount/internal/providers"
)

// switchProvider serves one value, or fails with a PermissionDenied.
type switchProvider struct {
	v1alpha1.UnimplementedCSIDriverProviderServer
	mu    sync.Mutex
	value string
	fail  bool
}

func (p *switchProvider) Mount(context.Context, *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return nil, status.Error(codes.PermissionDenied, "identity x may not read secret \"s\"")
	}
	return &v1alpha1.MountResponse{Files: []*v1alpha1.File{{Path: "s", Mode: 0o600, Contents: []byte(p.value)}},
		ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "secret/s", Version: p.value}}}, nil
}

func (p *switchProvider) set(value string, fail bool) {
	p.mu.Lock()
	p.value, p.fail = value, fail
	p.mu.Unlock()
}

// TestFailuresKeepOrCleanUp: a failed first mount returns the provider's
// code and leaves nothing mounted; a failed refresh keeps the last good
// files, reports success to kubelet and records a SecretRotationFailed
// event; a successful refresh rewrites and records SecretRotationComplete.
func TestFailuresKeepOrCleanUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts tmpfs: run as root (make test)")
	}
	dir := t.TempDir()
	lis, err := net.Listen("unix", filepath.Join(dir, "switch.sock"))
	if err != nil {
		t.Fatal(err)
	}
	prov := &switchProvider{value: "v1", fail: true}
	srv := grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(srv, prov)
	go srv.Serve(lis)
	defer srv.Stop()
	spc := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
		"metadata": map[string]any{"name": "spc", "namespace": "default"}, "spec": map[string]any{"provider": "switch", "parameters": map[string]any{"a": "b"}}}}
	events := schema.GroupVersionResource{Version: "v1", Resource: "events"}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		v1.SecretProviderClassResource: "SecretProviderClassList", v1.SecretProviderClassPodStatusResource: "SecretProviderClassPodStatusList", events: "EventList"}, spc)
	now := time.Unix(1_800_000_000, 0)
	n := &Node{d: New(Config{NodeID: "n", Providers: providers.New([]string{dir}, 0), Dynamic: dyn, Rotation: true,
		RotationPollInterval: time.Minute, Now: func() time.Time { return now }})}
	req := &csipb.NodePublishVolumeRequest{VolumeId: "vol", TargetPath: filepath.Join(dir, "target"), Readonly: true,
		VolumeCapability: &csipb.VolumeCapability{AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}}},
		VolumeContext:    map[string]string{"secretProviderClass": "spc", "csi.storage.k8s.io/pod.name": "p", "csi.storage.k8s.io/pod.namespace": "default", "csi.storage.k8s.io/pod.uid": "u"}}
	defer n.NodeUnpublishVolume(context.Background(), &csipb.NodeUnpublishVolumeRequest{VolumeId: "vol", TargetPath: req.TargetPath})
	reasons := func() string {
		list, _ := dyn.Resource(events).Namespace("default").List(context.Background(), metav1.ListOptions{})
		var r []string
		for _, e := range list.Items {
			reason, _, _ := unstructured.NestedString(e.Object, "reason")
			r = append(r, reason)
		}
		return strings.Join(r, ",")
	}
	read := func() string { b, _ := os.ReadFile(filepath.Join(req.TargetPath, "s")); return string(b) }

	_, err = n.NodePublishVolume(context.Background(), req)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("first mount: %v, want the provider's PermissionDenied", err)
	}
	if ok, _ := atomicdir.Mounted(req.TargetPath); ok {
		t.Fatal("a failed first mount left the tmpfs mounted")
	}
	prov.set("v1", false)
	if _, err := n.NodePublishVolume(context.Background(), req); err != nil || read() != "v1" {
		t.Fatalf("mount: %v, content %q", err, read())
	}
	prov.set("v2", true)
	now = now.Add(2 * time.Minute)
	if _, err := n.NodePublishVolume(context.Background(), req); err != nil || read() != "v1" {
		t.Fatalf("failed refresh: %v (want success reported), content %q (want v1 kept)", err, read())
	}
	prov.set("v2", false)
	now = now.Add(2 * time.Minute)
	if _, err := n.NodePublishVolume(context.Background(), req); err != nil || read() != "v2" {
		t.Fatalf("refresh: %v, content %q", err, read())
	}
	if got := reasons(); got != "FailedMount,SecretRotationFailed,SecretRotationComplete" {
		t.Errorf("events %s", got)
	}
}
