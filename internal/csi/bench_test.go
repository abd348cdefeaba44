package csi

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

func benchDriver(b *testing.B) (*Node, string) {
	td := newTestDriver(b, func(c *Config) { c.Now = nil })
	td.prov.set(func(*v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
		return &v1alpha1.MountResponse{
			Files:         []*v1alpha1.File{{Path: "secret1", Mode: 0o644, Contents: []byte("value")}, {Path: "key1", Mode: 0o644, Contents: []byte("-----BEGIN PUBLIC KEY-----")}},
			ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "secret/secret1", Version: "1"}, {Id: "key/key1", Version: "1"}},
		}, nil
	})
	return td.node, td.dir
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
