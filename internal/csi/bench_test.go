package csi

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	v1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	"kvmount.dev/kvmount/internal/providers"
)

// instantProvider answers every Mount at once with two small files, so a
// benchmark measures the driver alone.
type instantProvider struct {
	v1alpha1.UnimplementedCSIDriverProviderServer
}

func (instantProvider) Mount(context.Context, *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	return &v1alpha1.MountResponse{
		Files:         []*v1alpha1.File{{Path: "secret1", Mode: 0o644, Contents: []byte("value")}, {Path: "key1", Mode: 0o644, Contents: []byte("-----BEGIN PUBLIC KEY-----")}},
		ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "secret/secret1", Version: "1"}, {Id: "key/key1", Version: "1"}},
	}, nil
}

func benchDriver(b *testing.B) (*Node, string) {
	if os.Geteuid() != 0 {
		b.Skip("mounts tmpfs: run as root")
	}
	dir := b.TempDir()
	lis, err := net.Listen("unix", filepath.Join(dir, "bench.sock"))
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(srv, instantProvider{})
	go srv.Serve(lis)
	b.Cleanup(srv.Stop)
	spc := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
		"metadata": map[string]any{"name": "spc", "namespace": "default"}, "spec": map[string]any{"provider": "bench", "parameters": map[string]any{"a": "b"}}}}
	gvrs := map[schema.GroupVersionResource]string{v1.SecretProviderClassResource: "SecretProviderClassList", v1.SecretProviderClassPodStatusResource: "SecretProviderClassPodStatusList"}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), gvrs, spc)
	d := New(Config{NodeID: "n", Providers: providers.New([]string{dir}, 0), Dynamic: dyn, Rotation: true})
	return &Node{d: d}, dir
}

func publishReq(dir string, i int) *csipb.NodePublishVolumeRequest {
	return &csipb.NodePublishVolumeRequest{VolumeId: fmt.Sprintf("vol-%d", i), TargetPath: filepath.Join(dir, fmt.Sprintf("t%d", i)), Readonly: true,
		VolumeCapability: &csipb.VolumeCapability{AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}}},
		VolumeContext: map[string]string{"secretProviderClass": "spc", "csi.storage.k8s.io/pod.name": fmt.Sprintf("p%d", i),
			"csi.storage.k8s.io/pod.namespace": "default", "csi.storage.k8s.io/pod.uid": fmt.Sprintf("uid-%d", i)}}
}

// BenchmarkNodePublish is the driver's own cost of a first mount (class
// lookup, tmpfs mount, provider call over a socket to a provider that
// answers at once, atomic write, status object), without the provider's time.
func BenchmarkNodePublish(b *testing.B) {
	n, dir := benchDriver(b)
	i := 0
	for b.Loop() {
		req := publishReq(dir, i)
		if _, err := n.NodePublishVolume(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := n.NodeUnpublishVolume(context.Background(), &csipb.NodeUnpublishVolumeRequest{VolumeId: req.VolumeId, TargetPath: req.TargetPath}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		i++
	}
}

// BenchmarkRepublishWithinPoll is kubelet's periodic republish of a
// mounted volume inside the rotation poll interval: no provider call.
func BenchmarkRepublishWithinPoll(b *testing.B) {
	n, dir := benchDriver(b)
	req := publishReq(dir, 0)
	if _, err := n.NodePublishVolume(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		n.NodeUnpublishVolume(context.Background(), &csipb.NodeUnpublishVolumeRequest{VolumeId: req.VolumeId, TargetPath: req.TargetPath})
	})
	for b.Loop() {
		if _, err := n.NodePublishVolume(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
