package csi

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	v1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	"kvmount.dev/kvmount/internal/events"
	"kvmount.dev/kvmount/internal/providers"
)

// scriptProvider is a provider whose Mount answers are set by the test;
// it keeps the requests it received.
type scriptProvider struct {
	v1alpha1.UnimplementedCSIDriverProviderServer
	mu       sync.Mutex
	answer   func(*v1alpha1.MountRequest) (*v1alpha1.MountResponse, error)
	requests []*v1alpha1.MountRequest
}

func (p *scriptProvider) Mount(_ context.Context, req *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	p.mu.Lock()
	p.requests = append(p.requests, req)
	answer := p.answer
	p.mu.Unlock()
	return answer(req)
}

func (p *scriptProvider) set(answer func(*v1alpha1.MountRequest) (*v1alpha1.MountResponse, error)) {
	p.mu.Lock()
	p.answer = answer
	p.mu.Unlock()
}

func (p *scriptProvider) last() *v1alpha1.MountRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[len(p.requests)-1]
}

// serves answers with one file s = value.
func serves(value string) func(*v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	return func(*v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
		return &v1alpha1.MountResponse{Files: []*v1alpha1.File{{Path: "s", Mode: 0o600, Contents: []byte(value)}},
			ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "secret/s", Version: value}}}, nil
	}
}

func fails(err error) func(*v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	return func(*v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) { return nil, err }
}

// testDriver is a driver with a provider "script" on a socket in a temp
// dir, a fake API server holding class "spc" in namespace default, and a
// clock the test moves.
type testDriver struct {
	t    testing.TB
	node *Node
	dir  string
	prov *scriptProvider
	dyn  *dynamicfake.FakeDynamicClient
	now  time.Time
}

func newTestDriver(t testing.TB, tune func(*Config)) *testDriver {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounts tmpfs: run as root (make test)")
	}
	td := &testDriver{t: t, dir: t.TempDir(), prov: &scriptProvider{answer: serves("v1")}, now: time.Unix(1_800_000_000, 0)}
	lis, err := net.Listen("unix", filepath.Join(td.dir, "script.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(srv, td.prov)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	spc := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
		"metadata": map[string]any{"name": "spc", "namespace": "default"},
		"spec":     map[string]any{"provider": "script", "parameters": map[string]any{"keyvaultName": "class-vault", "usePodIdentity": "false"}}}}
	td.dyn = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		v1.SecretProviderClassResource: "SecretProviderClassList", v1.SecretProviderClassPodStatusResource: "SecretProviderClassPodStatusList", events.GVR: "EventList"}, spc)
	cfg := Config{NodeID: "n", Providers: providers.New([]string{td.dir}, 0), Dynamic: td.dyn, Rotation: true,
		RotationPollInterval: time.Minute, Now: func() time.Time { return td.now }}
	if tune != nil {
		tune(&cfg)
	}
	td.node = &Node{d: New(cfg)}
	return td
}

// req is a publish of volume vol for pod p, with extra volume context.
func (td *testDriver) req(vol string, extra map[string]string) *csipb.NodePublishVolumeRequest {
	vc := map[string]string{"secretProviderClass": "spc", "csi.storage.k8s.io/pod.name": "p", "csi.storage.k8s.io/pod.namespace": "default",
		"csi.storage.k8s.io/pod.uid": "u", "csi.storage.k8s.io/ephemeral": "true"}
	for k, v := range extra {
		vc[k] = v
	}
	r := &csipb.NodePublishVolumeRequest{VolumeId: vol, TargetPath: filepath.Join(td.dir, vol), Readonly: true, VolumeContext: vc,
		VolumeCapability: &csipb.VolumeCapability{AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}}}}
	td.t.Cleanup(func() {
		td.node.NodeUnpublishVolume(context.Background(), &csipb.NodeUnpublishVolumeRequest{VolumeId: vol, TargetPath: r.TargetPath})
	})
	return r
}

func (td *testDriver) publish(r *csipb.NodePublishVolumeRequest) error {
	_, err := td.node.NodePublishVolume(context.Background(), r)
	return err
}

func (td *testDriver) read(r *csipb.NodePublishVolumeRequest, name string) string {
	b, _ := os.ReadFile(filepath.Join(r.TargetPath, name))
	return string(b)
}

// events lists the recorded Events as "reason×count".
func (td *testDriver) events() []string {
	list, _ := td.dyn.Resource(events.GVR).Namespace("default").List(context.Background(), metav1.ListOptions{})
	var out []string
	for _, e := range list.Items {
		reason, _, _ := unstructured.NestedString(e.Object, "reason")
		count, _, _ := unstructured.NestedInt64(e.Object, "count")
		out = append(out, reason+"×"+strconv.Itoa(int(count)))
	}
	return out
}

func (td *testDriver) eventMessages() string {
	list, _ := td.dyn.Resource(events.GVR).Namespace("default").List(context.Background(), metav1.ListOptions{})
	var out []string
	for _, e := range list.Items {
		msg, _, _ := unstructured.NestedString(e.Object, "message")
		out = append(out, msg)
	}
	return strings.Join(out, " | ")
}

// apiCalls counts the fake API server's requests as verb resource.
func (td *testDriver) apiCalls() map[string]int {
	out := map[string]int{}
	for _, a := range td.dyn.Actions() {
		out[a.GetVerb()+" "+a.GetResource().Resource]++
	}
	return out
}

// providersWithLimit is the provider client with a response size limit.
func providersWithLimit(dir string, maxRecv int) *providers.Clients {
	return providers.New([]string{dir}, maxRecv)
}
