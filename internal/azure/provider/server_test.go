package provider_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azsim/podidentity"
	"kvmount.dev/kvmount/internal/azure/provider"
	"kvmount.dev/kvmount/internal/localcluster"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServerSurface checks what operators rely on: the socket is 0600,
// Version answers, /healthz says ok, and /metrics counts mounts by code
// without object names or messages in labels.
func TestServerSurface(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "v")
	health, metrics := freeAddr(t), freeAddr(t)
	var sock string
	e := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.HealthAddr, rc.MetricsAddr, sock = health, metrics, rc.Endpoint })
	fi, err := os.Stat(strings.TrimPrefix(sock, "unix://"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	v, err := e.client.Version(context.Background(), &v1alpha1.VersionRequest{Version: "v1alpha1"})
	if err != nil || v.RuntimeName != "kvmount-provider-azure" || v.Version != "v1alpha1" {
		t.Errorf("Version = %+v, %v", v, err)
	}
	_, _ = e.mount(e.baseParams("objectName: nothere\nobjectType: secret"), nil) // InvalidArgument: no credentials
	for i := 0; i < 500; i++ {                                                   // the HTTP servers start beside the gRPC one
		if code, _ := getQuiet(health + "/healthz"); code == 200 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := get(t, "http://"+health+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	code, body := get(t, "http://"+metrics+"/metrics")
	if code != 200 || !strings.Contains(body, `kvmount_provider_mounts_total{code="InvalidArgument"} 1`) || !strings.Contains(body, "kvmount_provider_keyvault_requests_total") {
		t.Errorf("/metrics lacks the mount counter:\n%s", body)
	}
	if strings.Contains(body, "nothere") {
		t.Error("an object name reached a metric label")
	}
	// Health checks (Version, by the driver's --provider-health-check and
	// the provider's own /healthz) are not requests.
	if strings.Contains(body, "/Version") || !strings.Contains(body, `grpc_method="/v1alpha1.CSIDriverProvider/Mount"`) {
		t.Errorf("grpc_request counts health checks, or not mounts:\n%s", grepLines(body, "grpc_request"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func getQuiet(hostport string) (int, error) {
	resp, err := http.Get("http://" + hostport)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestPodIdentity is the seed's first section through the provider: a pod
// labelled aadpodidbinding with its identity bound by `aks pod-identity
// add` mounts its objects through the node's NMI; a pod without the label
// gets FailedPrecondition explaining the label.
func TestPodIdentity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("starts a local cluster: run as root (make test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cluster, err := localcluster.Start(ctx, localcluster.Config{Dir: t.TempDir(), Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Stop() })
	if err := cluster.Apply(ctx, podidentity.CRDs); err != nil {
		t.Fatal(err)
	}
	s, cloudEnv := newSim(t, azsim.Config{Kubeconfig: cluster.KubeconfigPath})
	vaultWithSecret(t, s, "from-pod-identity")
	admin(t, s, "aks create", arm.AKSArgs{ResourceGroup: "rg", Name: "aks1", NodeCount: 1})
	id := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "pod-id"})
	admin(t, s, "aks pod-identity add", arm.PodIdentityArgs{ResourceGroup: "rg", ClusterName: "aks1", Namespace: "default", Name: "pod-id", IdentityResourceID: id["id"].(string)})
	grant(t, s, id["clientId"].(string))
	var nmi, node string
	for name, url := range s.Endpoints().NMI { // one node
		nmi, node = url, name
	}
	e := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.NMIEndpoint = nmi })
	cs, _ := cluster.Client()
	for name, labels := range map[string]map[string]string{"labelled": {"aadpodidbinding": "pod-id"}, "unlabelled": nil} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p := e.baseParams("objectName: secret1\nobjectType: secret")
	p["usePodIdentity"], p["csi.storage.k8s.io/pod.name"] = "true", "labelled"
	resp, err := e.mount(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(filesOf(resp)["secret1"].Contents) != "from-pod-identity" {
		t.Fatal("wrong content")
	}
	p["csi.storage.k8s.io/pod.name"] = "unlabelled"
	_, err = e.mount(p, nil)
	wantCode(t, err, codes.FailedPrecondition, "aadpodidbinding", "AzureIdentityBinding")
}
