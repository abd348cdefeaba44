package azsim_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azsim/jwt"
	"kvmount.dev/kvmount/internal/azsim/podidentity"
	"kvmount.dev/kvmount/internal/localcluster"
)

// TestPodIdentityNMI runs the NMI against a real API server: `aks
// pod-identity add` creates the AzureIdentity and binding, a labelled pod
// gets a token for that identity (from the node's IMDS) that reads the
// vault, and unlabelled or unbound pods get NMI's plain-text 404.
func TestPodIdentityNMI(t *testing.T) {
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
	s := startServer(t, azsim.Config{Kubeconfig: cluster.KubeconfigPath})
	admin(t, s, "aks create", arm.AKSArgs{ResourceGroup: "rg", Name: "aks1", NodeCount: 1})
	id := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "pod-id"})
	admin(t, s, "aks pod-identity add", arm.PodIdentityArgs{ResourceGroup: "rg", ClusterName: "aks1", Namespace: "default",
		Name: "pod-id", IdentityResourceID: id["id"].(string)})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "secret1", Value: "via-nmi"})
	admin(t, s, "keyvault set-policy", arm.PolicyArgs{Name: "kv1", SPN: id["clientId"].(string), Secrets: ptr([]string{"get"})})

	cs, err := cluster.Client()
	if err != nil {
		t.Fatal(err)
	}
	node := arm.ComputerName(vmssOf(t, s), 0)
	for name, labels := range map[string]map[string]string{"bound": {"aadpodidbinding": "pod-id"}, "unlabelled": nil, "unbound": {"aadpodidbinding": "nobody"}, "elsewhere": {"aadpodidbinding": "pod-id"}} {
		on := node
		if name == "elsewhere" {
			on = "another-node"
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: corev1.PodSpec{NodeName: on, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	nmiURL, err := s.NMIURL(node)
	if err != nil {
		t.Fatal(err)
	}
	get := func(pod string, headers bool) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, nmiURL+"/host/token/?resource="+azsim.VaultResource, nil)
		if headers {
			req.Header.Set("podname", pod)
			req.Header.Set("podns", "default")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	status, body := get("bound", true)
	if status != http.StatusOK {
		t.Fatalf("bound pod: %d %s", status, body)
	}
	var resp struct {
		Token    map[string]any `json:"token"`
		ClientID string         `json:"clientid"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil || resp.ClientID != id["clientId"] {
		t.Fatalf("response %s: clientid %q, want %v", body, resp.ClientID, id["clientId"])
	}
	tok, _ := resp.Token["access_token"].(string)
	if p, err := jwt.Parse(tok); err != nil || p.Claims.ObjectID != id["principalId"] {
		t.Fatalf("token is not the pod identity's: %v", err)
	}
	req, _ := http.NewRequest(http.MethodGet, azsim.VaultURL("kv1")+"/secrets/secret1?api-version=7.4", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	kv, err := s.HTTPClient().Do(req)
	if err != nil || kv.StatusCode != http.StatusOK {
		t.Fatalf("vault with the NMI token: %v %v", kv.Status, err)
	}
	kv.Body.Close()

	for _, tt := range []struct {
		pod     string
		headers bool
		status  int
		text    string
	}{
		{"bound", false, 400, "missing 'podname' and 'podns' from request header"},
		{"unlabelled", true, 404, `has no "aadpodidbinding" label`},
		{"unbound", true, 404, `no AzureIdentityBinding in namespace default has selector "nobody"`},
		// A node's NMI serves the pods on that node only.
		{"elsewhere", true, 404, "pod default/elsewhere not found on node " + node},
	} {
		status, body := get(tt.pod, tt.headers)
		if status != tt.status || !strings.Contains(body, tt.text) {
			t.Errorf("pod %s: %d %q, want %d containing %q", tt.pod, status, body, tt.status, tt.text)
		}
	}

	// NMI reads from watches, and follows them: the label removed, the
	// bound pod's next request is refused.
	patch := []byte(`{"metadata":{"labels":{"aadpodidbinding":null}}}`)
	if _, err := cs.CoreV1().Pods("default").Patch(ctx, "bound", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for status, body = get("bound", true); status != http.StatusNotFound; status, body = get("bound", true) {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after its label was removed, the pod still gets %d %s", status, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// vmssOf returns the node pool scale set of cluster aks1 in rg.
func vmssOf(t *testing.T, s *azsim.Server) string {
	t.Helper()
	show := admin(t, s, "aks show", arm.AKSArgs{ResourceGroup: "rg", Name: "aks1"})
	list := admin(t, s, "vmss list", arm.MachineArgs{ResourceGroup: show["nodeResourceGroup"].(string)})
	sets, _ := list["value"].([]any)
	if len(sets) != 1 {
		t.Fatalf("node resource group holds %d scale sets, want 1", len(sets))
	}
	return sets[0].(map[string]any)["name"].(string)
}
