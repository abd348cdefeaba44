package azsim

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"

	"kvmount.dev/kvmount/internal/azsim/store"
	"kvmount.dev/kvmount/internal/azsim/tokenproxy"
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

// TokenProxyServerName is the TLS server name of the token proxy of the
// control plane id (tokenproxy.ServerName: written from AKS's documented
// rule, not shared with the provider, which azsim checks).
func TokenProxyServerName(id string) string { return tokenproxy.ServerName(id) }

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
	proxy := &tokenproxy.Proxy{Dir: proxyDirectory{s}, Reviewer: tokenproxy.KubeReviewer{Client: s.kube}, Logger: s.cfg.Logger,
		OnToken: func() { s.tokens.proxy.Add(1) }}
	srv := &http.Server{Handler: proxy.Handler(s.ent), ReadHeaderTimeout: 10 * time.Second, TLSConfig: proxy.TLSConfig(cert)}
	go func() { _ = srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	s.mu.Lock()
	s.endpoints["tokenproxy:"] = &endpoint{url: "https://" + ln.Addr().String(), http: srv}
	s.mu.Unlock()
	return nil
}

// proxyDirectory is the server's store as the token proxy reads it.
type proxyDirectory struct{ s *Server }

// ClusterByServerName is the cluster whose token proxy has that server name.
func (d proxyDirectory) ClusterByServerName(sni string) (tokenproxy.Cluster, error) {
	var clusters []store.Cluster
	if err := d.s.view(func(tx *store.Tx) error {
		var err error
		clusters, err = store.List[store.Cluster](tx, store.BucketClusters, "")
		return err
	}); err != nil {
		return tokenproxy.Cluster{}, err
	}
	for _, c := range clusters {
		if strings.EqualFold(tokenproxy.ServerName(ControlPlaneID(d.s.cloud.SubscriptionID, c.ResourceGroup, c.Name)), sni) {
			return tokenproxy.Cluster{Name: c.Name, ResourceGroup: c.ResourceGroup}, nil
		}
	}
	return tokenproxy.Cluster{}, fmt.Errorf("azsim token proxy: no cluster has server name %q", sni)
}

// BoundIdentity is the user-assigned identity clientID names in tenant,
// with the name of the cluster's binding for it.
func (d proxyDirectory) BoundIdentity(c tokenproxy.Cluster, tenant, clientID string) (store.Principal, string, error) {
	var p store.Principal
	binding := ""
	err := d.s.view(func(tx *store.Tx) error {
		var err error
		if p, err = store.FindPrincipal(tx, clientID); err != nil || p.Kind != store.KindUserAssigned || !strings.EqualFold(p.TenantID, tenant) {
			return store.ErrNotFound
		}
		all, err := store.List[store.IdentityBinding](tx, store.BucketIdentityBindings, store.Path(c.ResourceGroup, c.Name)+"/")
		for _, b := range all {
			if strings.EqualFold(b.IdentityResourceID, p.ResourceID) {
				binding = b.Name
			}
		}
		return err
	})
	return p, binding, err
}
