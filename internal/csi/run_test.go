package csi

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"kvmount.dev/kvmount/internal/providers"
)

// TestServesWithoutAPIServer: while the API server is unreachable, or
// serves no SecretProviderClass resource (the CRD is not installed), the
// driver still serves kubelet at once — probes, /healthz, unmounts — and a
// mount fails after a bounded wait with a code kubelet retries and a
// message that says what is missing. (It used to serve nothing until the
// first list of classes succeeded, so the liveness probe killed it.)
func TestServesWithoutAPIServer(t *testing.T) {
	noCRD := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","details":{},"code":404}`)
	}))
	defer noCRD.Close()
	tests := []struct {
		name, host, want string
	}{
		{"API server unreachable", "http://" + closedAddr(t), "has not listed the classes yet"},
		{"CRD missing", noCRD.URL, "the CRD is not installed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dyn, err := dynamic.NewForConfig(&rest.Config{Host: tt.host, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			classes := NewClasses(dyn)
			classes.SyncWait = 300 * time.Millisecond
			d := New(Config{NodeID: "n", Providers: providers.New([]string{dir}, 0), Dynamic: dyn, Classes: classes})
			health := closedAddr(t)
			ctx, cancel := context.WithCancel(context.Background())
			endpoint := "unix://" + filepath.Join(dir, "csi.sock")
			done := make(chan error, 1)
			go func() { done <- d.Serve(ctx, ServeConfig{Endpoint: endpoint, HealthAddr: health}) }()
			defer func() {
				cancel()
				<-done
			}()
			conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer ccancel()
			if _, err := csipb.NewIdentityClient(conn).Probe(cctx, &csipb.ProbeRequest{}, grpc.WaitForReady(true)); err != nil {
				t.Fatalf("probe: %v", err)
			}
			waitHealthy(t, "http://"+health+"/healthz")
			node := csipb.NewNodeClient(conn)
			if _, err := node.NodeUnpublishVolume(cctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "v", TargetPath: filepath.Join(dir, "gone")}); err != nil {
				t.Errorf("unpublish: %v", err)
			}
			req := &csipb.NodePublishVolumeRequest{VolumeId: "v", TargetPath: filepath.Join(dir, "t"), Readonly: true,
				VolumeCapability: &csipb.VolumeCapability{AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}}},
				VolumeContext:    map[string]string{"secretProviderClass": "spc", "csi.storage.k8s.io/pod.name": "p", "csi.storage.k8s.io/pod.namespace": "ns"}}
			_, err = node.NodePublishVolume(cctx, req)
			if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), tt.want) || !strings.Contains(st.Message(), "ns/spc") {
				t.Errorf("publish: %v %q; want Unavailable naming the class and saying %q", st.Code(), st.Message(), tt.want)
			}
		})
	}
}

// closedAddr is a loopback address nothing listens on (now).
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered 200: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
