package azsim

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"kvmount.dev/kvmount/internal/azsim/entra"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// AKS identity binding, as azsim models it: `aks identity-binding create`
// maps a user-assigned managed identity to a cluster; the cluster's RBAC
// says which service accounts may use it (verb use-managed-identity on
// cid.wi.aks.azure.com/<client-id>); and the token proxy, reached at its
// own TLS server name (derived from the control plane's ID, which the API
// server's certificate carries), exchanges a pod's service-account token
// for audience api://AKSIdentityBinding for an Entra token of the
// identity. No federated credential has to be made per service account.

func init() {
	register("aks identity-binding create", identityBindingCreate)
	register("aks identity-binding show", identityBindingShow)
	register("aks identity-binding list", identityBindingList)
	register("aks identity-binding delete", identityBindingDelete)
}

// Identity-binding RBAC, as AKS checks it, and the audience of the
// service-account tokens its proxy accepts.
const (
	identityBindingGroup    = "cid.wi.aks.azure.com"
	identityBindingVerb     = "use-managed-identity"
	identityBindingAudience = "api://AKSIdentityBinding"
)

// TokenProxyServerName is the TLS server name of the token proxy of the
// control plane id, as AKS documents it for clients that do not read it
// from the API server's certificate: "a", then the SHA-256 of
// "identity-binding" + id in base32 with the extended-hex alphabet, lower
// case and unpadded, then ".ests.aks". (Written here from that rule, not
// shared with the provider, which azsim checks.)
func TokenProxyServerName(id string) string {
	sum := sha256.Sum256([]byte("identity-binding" + id))
	enc := base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)
	return "a" + enc.EncodeToString(sum[:]) + ".ests.aks"
}

// IdentityBindingArgs is `aks identity-binding create|show|list|delete`.
type IdentityBindingArgs struct {
	ResourceGroup string `json:"resourceGroup"`
	ClusterName   string `json:"clusterName"`
	Name          string `json:"name"`
	// ManagedIdentityResourceID is the user-assigned identity to bind.
	ManagedIdentityResourceID string `json:"managedIdentityResourceId"`
}

// ControlPlaneID is the ID of an AKS cluster's control plane, which its
// API server's certificate carries as hcp-kubernetes.<id>.svc.cluster.local
// (the local cluster's does too, so identity binding finds its proxy).
func ControlPlaneID(subscription, resourceGroup, cluster string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(subscription + "/" + resourceGroup + "/" + cluster)))
	return hex.EncodeToString(sum[:12])
}

// APIServerName is the certificate name that carries the control plane's
// ID.
func APIServerName(id string) string { return "hcp-kubernetes." + id + ".svc.cluster.local" }

func identityBindingCreate(_ context.Context, s *Server, a IdentityBindingArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--cluster-name", a.ClusterName, "--name/-n", a.Name,
		"--managed-identity-resource-id", a.ManagedIdentityResourceID); err != nil {
		return nil, err
	}
	var b store.IdentityBinding
	err := s.update(func(tx *store.Tx) error {
		if _, err := store.Get[store.Cluster](tx, store.BucketClusters, store.Path(a.ResourceGroup, a.ClusterName)); err != nil {
			return notFound("The Resource 'Microsoft.ContainerService/managedClusters/%s' under resource group '%s' was not found.", a.ClusterName, a.ResourceGroup)
		}
		p, err := store.FindUserAssigned(tx, a.ManagedIdentityResourceID)
		if err != nil {
			return invalid("--managed-identity-resource-id %s is not a user-assigned managed identity (az identity show --query id)", a.ManagedIdentityResourceID)
		}
		b = store.IdentityBinding{Name: a.Name, ResourceGroup: a.ResourceGroup, Cluster: a.ClusterName, IdentityResourceID: p.ResourceID, ClientID: p.ClientID}
		return store.Put(tx, store.BucketIdentityBindings, store.Path(a.ResourceGroup, a.ClusterName, a.Name), b)
	})
	if err != nil {
		return nil, err
	}
	return s.identityBindingJSON(b)
}

func identityBindingShow(_ context.Context, s *Server, a IdentityBindingArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--cluster-name", a.ClusterName, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	var b store.IdentityBinding
	if err := s.view(func(tx *store.Tx) error {
		var err error
		b, err = store.Get[store.IdentityBinding](tx, store.BucketIdentityBindings, store.Path(a.ResourceGroup, a.ClusterName, a.Name))
		return err
	}); err != nil {
		return nil, notFound("identity binding %s of cluster %s not found", a.Name, a.ClusterName)
	}
	return s.identityBindingJSON(b)
}

func identityBindingList(_ context.Context, s *Server, a IdentityBindingArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--cluster-name", a.ClusterName); err != nil {
		return nil, err
	}
	var all []store.IdentityBinding
	if err := s.view(func(tx *store.Tx) error {
		var err error
		all, err = store.List[store.IdentityBinding](tx, store.BucketIdentityBindings, store.Path(a.ResourceGroup, a.ClusterName)+"/")
		return err
	}); err != nil {
		return nil, err
	}
	out := []any{}
	for _, b := range all {
		j, err := s.identityBindingJSON(b)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return map[string]any{"value": out}, nil
}

func identityBindingDelete(_ context.Context, s *Server, a IdentityBindingArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--cluster-name", a.ClusterName, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	return nil, s.update(func(tx *store.Tx) error {
		return store.Delete(tx, store.BucketIdentityBindings, store.Path(a.ResourceGroup, a.ClusterName, a.Name))
	})
}

// identityBindingJSON is a binding as ARM shows it.
func (s *Server) identityBindingJSON(b store.IdentityBinding) (map[string]any, error) {
	var p store.Principal
	if err := s.view(func(tx *store.Tx) error {
		var err error
		p, err = store.FindUserAssigned(tx, b.IdentityResourceID)
		return err
	}); err != nil {
		return nil, err
	}
	return map[string]any{
		"id": fmt.Sprintf("/subscriptions/%s/resourcegroups/%s/providers/Microsoft.ContainerService/managedClusters/%s/identityBindings/%s",
			s.cloud.SubscriptionID, b.ResourceGroup, b.Cluster, b.Name),
		"name": b.Name, "resourceGroup": b.ResourceGroup, "type": "Microsoft.ContainerService/managedClusters/identityBindings",
		"properties": map[string]any{
			"managedIdentity":   map[string]any{"clientId": p.ClientID, "objectId": p.ObjectID, "resourceId": p.ResourceID, "tenantId": p.TenantID},
			"oidcIssuer":        map[string]any{"oidcIssuerUrl": LoginURL + "/" + p.TenantID + "/identitybinding/" + p.ClientID + "/"},
			"provisioningState": "Succeeded",
		},
	}, nil
}

// startTokenProxy serves AKS's token proxy when it has a certificate.
func (s *Server) startTokenProxy() error {
	if s.cfg.TokenProxyCert == "" {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(s.cfg.TokenProxyCert, s.cfg.TokenProxyKey)
	if err != nil {
		return fmt.Errorf("azsim: token proxy certificate: %w", err)
	}
	s.mu.Lock()
	_, running := s.endpoints["tokenproxy:"]
	s.mu.Unlock()
	if running {
		return nil
	}
	ln, err := s.listenKept("tokenproxy:")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.tokenProxyHandler(s.ent), ReadHeaderTimeout: 10 * time.Second, TLSConfig: s.tokenProxyTLS(cert)}
	go func() { _ = srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	s.mu.Lock()
	s.endpoints["tokenproxy:"] = &endpoint{url: "https://" + ln.Addr().String(), http: srv}
	s.mu.Unlock()
	return nil
}

// tokenProxyTLS serves the token proxy's certificate to clients that ask
// for the server name of a cluster azsim knows, and refuses the rest.
func (s *Server) tokenProxyTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if _, err := s.clusterBySNI(hello.ServerName); err != nil {
			return nil, err
		}
		return &cert, nil
	}}
}

// clusterBySNI is the cluster whose token proxy has that server name.
func (s *Server) clusterBySNI(sni string) (store.Cluster, error) {
	var clusters []store.Cluster
	if err := s.view(func(tx *store.Tx) error {
		var err error
		clusters, err = store.List[store.Cluster](tx, store.BucketClusters, "")
		return err
	}); err != nil {
		return store.Cluster{}, err
	}
	for _, c := range clusters {
		if strings.EqualFold(TokenProxyServerName(ControlPlaneID(s.cloud.SubscriptionID, c.ResourceGroup, c.Name)), sni) {
			return c, nil
		}
	}
	return store.Cluster{}, fmt.Errorf("azsim token proxy: no cluster has server name %q", sni)
}

// tokenProxyHandler is Entra ID's endpoints as the token proxy serves them:
// discovery as Entra's, the token endpoint with identity binding's client
// authentication.
func (s *Server) tokenProxyHandler(ent *entra.Handler) http.Handler {
	h := ent.WithClientAuth(s.identityBindingAuth)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.cfg.Logger.Debug("token proxy request", "sni", r.TLS.ServerName, "method", r.Method, "path", r.URL.Path)
		if r.Method == http.MethodPost {
			s.tokens.proxy.Add(1)
		}
		h.ServeHTTP(w, r)
	})
}

// identityBindingAuth is the token proxy's check of a token request: the
// cluster (by server name) has an identity binding for the managed identity
// client_id names; the assertion is a service-account token of that cluster
// for api://AKSIdentityBinding (the API server says, by TokenReview); and
// the cluster's RBAC lets that service account use the identity
// (SubjectAccessReview). The token is then the identity's.
func (s *Server) identityBindingAuth(r *http.Request, tenant, clientID string) (store.Principal, error) {
	c, err := s.clusterBySNI(r.TLS.ServerName)
	if err != nil {
		return store.Principal{}, entra.NewOAuthError(http.StatusBadRequest, "invalid_request", 0, err.Error())
	}
	p, binding, err := s.boundIdentity(c, tenant, clientID)
	if err != nil {
		return store.Principal{}, err
	}
	f := r.PostForm
	if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || f.Get("client_assertion") == "" {
		return store.Principal{}, entra.NewOAuthError(http.StatusBadRequest, "invalid_request", 0,
			"AKS token proxy: the request must carry the pod's service-account token as client_assertion (client_assertion_type urn:ietf:params:oauth:client-assertion-type:jwt-bearer)")
	}
	user, groups, err := s.reviewToken(r.Context(), f.Get("client_assertion"))
	if err != nil {
		return store.Principal{}, entra.NewOAuthError(http.StatusUnauthorized, "invalid_client", 0,
			fmt.Sprintf("AKS token proxy: the client assertion is not a valid service-account token of cluster %s for audience %s: %v", c.Name, identityBindingAudience, err))
	}
	allowed, err := s.mayUseIdentity(r.Context(), user, groups, clientID)
	if err != nil {
		return store.Principal{}, entra.NewOAuthError(http.StatusServiceUnavailable, "temporarily_unavailable", 0, "AKS token proxy: "+err.Error())
	}
	if !allowed {
		return store.Principal{}, entra.NewOAuthError(http.StatusForbidden, "unauthorized_client", 0,
			fmt.Sprintf("AKS token proxy: %s is not allowed to use managed identity %s (identity binding %s): no ClusterRole binds verb %s on %s/%s to it",
				user, clientID, binding.Name, identityBindingVerb, identityBindingGroup, clientID))
	}
	return p, nil
}

// boundIdentity is the user-assigned identity clientID names, with the
// cluster's binding for it.
func (s *Server) boundIdentity(c store.Cluster, tenant, clientID string) (store.Principal, store.IdentityBinding, error) {
	var p store.Principal
	var binding store.IdentityBinding
	found := false
	err := s.view(func(tx *store.Tx) error {
		var err error
		if p, err = store.FindPrincipal(tx, clientID); err != nil || p.Kind != store.KindUserAssigned || !strings.EqualFold(p.TenantID, tenant) {
			return store.ErrNotFound
		}
		all, err := store.List[store.IdentityBinding](tx, store.BucketIdentityBindings, store.Path(c.ResourceGroup, c.Name)+"/")
		for _, b := range all {
			if strings.EqualFold(b.IdentityResourceID, p.ResourceID) {
				binding, found = b, true
			}
		}
		return err
	})
	if err != nil {
		return p, binding, entra.NewOAuthError(http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory '%s': identity binding needs a user-assigned managed identity's client ID.", clientID, tenant))
	}
	if !found {
		return p, binding, entra.NewOAuthError(http.StatusBadRequest, "unauthorized_client", 0,
			fmt.Sprintf("AKS token proxy: cluster %s has no identity binding for managed identity %s: az aks identity-binding create -g %s --cluster-name %s -n <name> --managed-identity-resource-id %s",
				c.Name, clientID, c.ResourceGroup, c.Name, p.ResourceID))
	}
	return p, binding, nil
}

var (
	tokenReviews = schema.GroupVersionResource{Group: "authentication.k8s.io", Version: "v1", Resource: "tokenreviews"}
	accessReview = schema.GroupVersionResource{Group: "authorization.k8s.io", Version: "v1", Resource: "subjectaccessreviews"}
)

// reviewToken asks the cluster's API server who the service-account token
// for api://AKSIdentityBinding belongs to.
func (s *Server) reviewToken(ctx context.Context, token string) (string, []string, error) {
	kube, err := s.kube()
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	review := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
		"spec": map[string]any{"token": token, "audiences": []any{identityBindingAudience}}}}
	out, err := kube.Resource(tokenReviews).Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("token review: %w", err)
	}
	if ok, _, _ := unstructured.NestedBool(out.Object, "status", "authenticated"); !ok {
		msg, _, _ := unstructured.NestedString(out.Object, "status", "error")
		return "", nil, fmt.Errorf("the API server did not authenticate it (%s)", msg)
	}
	user, _, _ := unstructured.NestedString(out.Object, "status", "user", "username")
	groups, _, _ := unstructured.NestedStringSlice(out.Object, "status", "user", "groups")
	if !strings.HasPrefix(user, "system:serviceaccount:") {
		return "", nil, fmt.Errorf("it belongs to %s, not a service account", user)
	}
	return user, groups, nil
}

// mayUseIdentity asks the cluster's RBAC whether user may use the managed
// identity with client ID clientID.
func (s *Server) mayUseIdentity(ctx context.Context, user string, groups []string, clientID string) (bool, error) {
	kube, err := s.kube()
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	gs := make([]any, len(groups))
	for i, g := range groups {
		gs[i] = g
	}
	sar := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
		"spec": map[string]any{"user": user, "groups": gs,
			"resourceAttributes": map[string]any{"verb": identityBindingVerb, "group": identityBindingGroup, "resource": clientID}}}}
	out, err := kube.Resource(accessReview).Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("access review: %w", err)
	}
	ok, _, _ := unstructured.NestedBool(out.Object, "status", "allowed")
	return ok, nil
}
