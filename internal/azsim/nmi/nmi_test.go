package nmi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

func obj(apiVersion, kind, ns, name string, labels map[string]any, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind,
		"metadata": map[string]any{"namespace": ns, "name": name}, "spec": spec}}
	if labels != nil {
		u.Object["metadata"].(map[string]any)["labels"] = labels
	}
	return u
}

// TestHandler: NMI's answers, table-driven, over an API server fake (the
// cluster is a boundary azsim does not own; TestPodIdentityNMI in azsim
// runs the same path against a real one) and an IMDS that echoes the
// client ID it was asked for.
func TestHandler(t *testing.T) {
	pod := func(name, node, selector string) *unstructured.Unstructured {
		var labels map[string]any
		if selector != "" {
			labels = map[string]any{BindingLabel: selector}
		}
		return obj("v1", "Pod", "default", name, labels, map[string]any{"nodeName": node})
	}
	objs := []runtime.Object{
		pod("bound", "node1", "sel1"), pod("elsewhere", "node2", "sel1"), pod("unlabelled", "node1", ""),
		pod("unknown-selector", "node1", "nope"), pod("sp-identity", "node1", "sel-sp"), pod("imds-refuses", "node1", "sel-refused"),
		obj("aadpodidentity.k8s.io/v1", "AzureIdentityBinding", "default", "b1", nil, map[string]any{"selector": "sel1", "azureIdentity": "id1"}),
		obj("aadpodidentity.k8s.io/v1", "AzureIdentityBinding", "default", "b2", nil, map[string]any{"selector": "sel-sp", "azureIdentity": "id-sp"}),
		obj("aadpodidentity.k8s.io/v1", "AzureIdentityBinding", "default", "b3", nil, map[string]any{"selector": "sel-refused", "azureIdentity": "id-refused"}),
		obj("aadpodidentity.k8s.io/v1", "AzureIdentity", "default", "id1", nil, map[string]any{"type": int64(0), "clientID": "client-1"}),
		obj("aadpodidentity.k8s.io/v1", "AzureIdentity", "default", "id-sp", nil, map[string]any{"type": int64(1), "clientID": "client-sp"}),
		obj("aadpodidentity.k8s.io/v1", "AzureIdentity", "default", "id-refused", nil, map[string]any{"type": int64(0), "clientID": "client-refused"}),
	}
	kube := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		podsGVR: "PodList", bindingsGVR: "AzureIdentityBindingList", identitiesGVR: "AzureIdentityList"}, objs...)
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata") != "true" || r.URL.Path != "/metadata/identity/oauth2/token" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		id := r.URL.Query().Get("client_id")
		if id == "client-refused" {
			http.Error(w, `{"error":"invalid_request","error_description":"Identity not found"}`, http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "token-of-" + id, "resource": r.URL.Query().Get("resource")})
	}))
	defer imds.Close()
	c := NewCache(kube)
	defer c.Close()
	h := New(Config{Cache: c, IMDSURL: imds.URL, Node: "node1", Address: "10.0.0.4"})

	tests := []struct {
		name, pod, remote, clientID, path string
		status                            int
		want                              string
	}{
		{"bound pod", "bound", "127.0.0.1:40000", "", "/host/token/?resource=https://vault.azure.net", 200, `"access_token":"token-of-client-1"`},
		{"from the node's address", "bound", "10.0.0.4:40000", "", "/host/token/?resource=r", 200, `"clientid":"client-1"`},
		{"client id that matches", "bound", "127.0.0.1:1", "CLIENT-1", "/host/token/?resource=r", 200, `"clientid":"client-1"`},
		{"client id of another identity", "bound", "127.0.0.1:1", "client-2", "/host/token/?resource=r", 404, `no AzureIdentityBinding in namespace default has selector "sel1"`},
		{"from a pod's address", "bound", "10.244.0.7:1", "", "/host/token/?resource=r", 500, "not from a host"},
		{"no resource", "bound", "127.0.0.1:1", "", "/host/token/", 400, "resource cannot be empty"},
		{"pod on another node", "elsewhere", "127.0.0.1:1", "", "/host/token/?resource=r", 404, "not found on node node1"},
		{"missing pod", "gone", "127.0.0.1:1", "", "/host/token/?resource=r", 404, "not found on node node1"},
		{"no label", "unlabelled", "127.0.0.1:1", "", "/host/token/?resource=r", 404, `has no "aadpodidbinding" label`},
		{"no binding", "unknown-selector", "127.0.0.1:1", "", "/host/token/?resource=r", 404, `selector "nope"`},
		{"service principal identity", "sp-identity", "127.0.0.1:1", "", "/host/token/?resource=r", 404, "has type 1"},
		{"IMDS refuses", "imds-refuses", "127.0.0.1:1", "", "/host/token/?resource=r", 403, "IMDS answered 400"},
		{"other paths", "bound", "127.0.0.1:1", "", "/metadata/identity/oauth2/token", 404, "serves /host/token/ only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://nmi"+tt.path, nil)
			req.RemoteAddr = tt.remote
			req.Header.Set("podname", tt.pod)
			req.Header.Set("podns", "default")
			if tt.clientID != "" {
				req.Header.Set("clientid", tt.clientID)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.want) {
				t.Fatalf("%d %s; want %d with %s", rec.Code, rec.Body, tt.status, tt.want)
			}
		})
	}

	req := httptest.NewRequest(http.MethodGet, "http://nmi/host/token/?resource=r", nil)
	req.RemoteAddr = "127.0.0.1:1"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "missing 'podname' and 'podns'") {
		t.Errorf("without pod headers: %d %s", rec.Code, rec.Body)
	}
}
