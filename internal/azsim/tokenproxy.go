package azsim

import (
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

// TokenProxyServerName is the TLS server name of the token proxy of the
// control plane id (tokenproxy.ServerName: written from AKS's documented
// rule, not shared with the provider, which azsim checks).
func TokenProxyServerName(id string) string { return tokenproxy.ServerName(id) }

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
