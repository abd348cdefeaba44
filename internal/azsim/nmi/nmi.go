// Package nmi serves one node's aad-pod-identity Node Managed Identity
// endpoint, GET /host/token/, as the Secrets Store Azure provider calls it in
// pod-identity mode: the pod named by the podname/podns headers is resolved
// through the cluster (its aadpodidbinding label, an AzureIdentityBinding
// with that selector, the AzureIdentity it names; from a watch-fed Cache),
// and the token comes from the node's IMDS for that identity, as NMI in
// managed mode does. Errors are plain text, as NMI writes them with
// http.Error.
package nmi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// BindingLabel is the pod label an AzureIdentityBinding selects on.
const BindingLabel = "aadpodidbinding"

var (
	podsGVR       = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	identitiesGVR = schema.GroupVersionResource{Group: "aadpodidentity.k8s.io", Version: "v1", Resource: "azureidentities"}
	bindingsGVR   = schema.GroupVersionResource{Group: "aadpodidentity.k8s.io", Version: "v1", Resource: "azureidentitybindings"}
)

// Config wires one node's NMI.
type Config struct {
	// Cache is the cluster as the NMIs see it (shared by all nodes).
	Cache *Cache
	// IMDSURL is the node's IMDS, where tokens come from.
	IMDSURL string
	// Node is the node's name: NMI serves only pods that run on it.
	Node string
	// Address is the node's own network address, which (with loopback)
	// is where host processes' requests come from; empty means loopback
	// only.
	Address string
}

// Handler is one node's NMI.
type Handler struct {
	cfg    Config
	client *http.Client
}

// New returns the NMI of cfg.Node.
func New(cfg Config) *Handler {
	return &Handler{cfg: cfg, client: &http.Client{Timeout: 15 * time.Second}}
}

// ServeHTTP answers /host/token/; the intercepted IMDS path for ordinary
// pods is not served: no container runs on a local node.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/host/token") {
		http.Error(w, "azsim NMI serves /host/token/ only", http.StatusNotFound)
		return
	}
	podName, podNS := r.Header.Get("podname"), r.Header.Get("podns")
	if podName == "" || podNS == "" {
		http.Error(w, "missing 'podname' and 'podns' from request header", http.StatusBadRequest)
		return
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err != nil || (host != "127.0.0.1" && host != h.cfg.Address) {
		http.Error(w, "request remote address is not from a host", http.StatusInternalServerError)
		return
	}
	resource := r.URL.Query().Get("resource")
	if resource == "" {
		http.Error(w, "parameter resource cannot be empty", http.StatusBadRequest)
		return
	}
	clientID, err := h.identityFor(r.Context(), podNS, podName, r.Header.Get("clientid"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	tok, err := h.token(r.Context(), clientID, resource)
	if err != nil {
		http.Error(w, fmt.Sprintf("failed to get service principal token for pod:%s/%s, error: %v", podNS, podName, err), http.StatusForbidden)
		return
	}
	tok["refresh_token"] = ""
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "clientid": clientID})
}

// identityFor resolves the pod's user-assigned identity client ID through
// its aadpodidbinding label.
func (h *Handler) identityFor(ctx context.Context, ns, name, wantClientID string) (string, error) {
	c := h.cfg.Cache
	if !c.synced(ctx) {
		return "", fmt.Errorf("NMI on node %s: the cluster's pods and bindings are not readable yet", h.cfg.Node)
	}
	pod := c.pod(ctx, ns, name, h.cfg.Node)
	if pod == nil || (h.cfg.Node != "" && nodeName(pod) != h.cfg.Node) {
		return "", fmt.Errorf("pod %s/%s not found on node %s", ns, name, h.cfg.Node)
	}
	selector := pod.GetLabels()[BindingLabel]
	if selector == "" {
		return "", fmt.Errorf("no AzureIdentityBinding matches pod %s/%s: the pod has no %q label; add the label with the selector of an AzureIdentityBinding in namespace %s", ns, name, BindingLabel, ns)
	}
	for _, b := range c.bindingsIn(ns) {
		sel, _, _ := unstructured.NestedString(b.Object, "spec", "selector")
		idName, _, _ := unstructured.NestedString(b.Object, "spec", "azureIdentity")
		if sel != selector {
			continue
		}
		clientID, err := h.clientID(ns, idName)
		if err != nil {
			return "", err
		}
		if wantClientID == "" || strings.EqualFold(wantClientID, clientID) {
			return clientID, nil
		}
	}
	return "", fmt.Errorf("no AzureIdentityBinding in namespace %s has selector %q (the pod %s/%s's %s label); create one with `azsim aks pod-identity add` or fix the label",
		ns, selector, ns, name, BindingLabel)
}

func (h *Handler) clientID(ns, name string) (string, error) {
	id := h.cfg.Cache.identity(ns, name)
	if id == nil {
		return "", fmt.Errorf("AzureIdentity %s/%s named by a binding does not exist", ns, name)
	}
	typ, _, _ := unstructured.NestedInt64(id.Object, "spec", "type")
	if typ != 0 {
		return "", fmt.Errorf("AzureIdentity %s/%s has type %d; azsim's NMI supports type 0 (user-assigned managed identity)", ns, name, typ)
	}
	clientID, _, _ := unstructured.NestedString(id.Object, "spec", "clientID")
	if clientID == "" {
		return "", fmt.Errorf("AzureIdentity %s/%s has no spec.clientID", ns, name)
	}
	return clientID, nil
}

// token asks the node's IMDS for the identity's token.
func (h *Handler) token(ctx context.Context, clientID, resource string) (map[string]any, error) {
	q := url.Values{"api-version": {"2018-02-01"}, "resource": {resource}, "client_id": {clientID}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.cfg.IMDSURL+"/metadata/identity/oauth2/token?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Metadata", "true")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("IMDS answered %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var tok map[string]any
	if err := json.Unmarshal(body, &tok); err != nil {
		return nil, fmt.Errorf("IMDS answer: %w", err)
	}
	return tok, nil
}

func nodeName(pod *unstructured.Unstructured) string {
	n, _, _ := unstructured.NestedString(pod.Object, "spec", "nodeName")
	return n
}
