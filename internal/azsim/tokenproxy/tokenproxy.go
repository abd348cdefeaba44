// Package tokenproxy is AKS identity binding's token proxy as azsim models
// it: Entra ID's endpoints served at the proxy's own TLS server name (one
// per cluster, derived from the control plane's ID), whose token endpoint
// exchanges a pod's service-account token for audience
// api://AKSIdentityBinding for an Entra token of a user-assigned identity
// bound to the cluster, if the cluster's RBAC lets that service account
// use the identity. It is written from AKS's documented behaviour, never
// from the provider it checks.
package tokenproxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"kvmount.dev/kvmount/internal/azsim/entra"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// Identity-binding RBAC, as AKS checks it, and the audience of the
// service-account tokens the proxy accepts.
const (
	Group    = "cid.wi.aks.azure.com"
	Verb     = "use-managed-identity"
	Audience = "api://AKSIdentityBinding"
)

// ServerName is the TLS server name of the token proxy of the control
// plane id, as AKS documents it for clients that do not read it from the
// API server's certificate: "a", then the SHA-256 of "identity-binding" +
// id in base32 with the extended-hex alphabet, lower case and unpadded,
// then ".ests.aks".
func ServerName(id string) string {
	sum := sha256.Sum256([]byte("identity-binding" + id))
	enc := base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)
	return "a" + enc.EncodeToString(sum[:]) + ".ests.aks"
}

// Cluster is what the proxy needs of an AKS cluster.
type Cluster struct{ Name, ResourceGroup string }

// Directory is azsim's state as the proxy reads it.
type Directory interface {
	// ClusterByServerName is the cluster whose proxy has that server name.
	ClusterByServerName(sni string) (Cluster, error)
	// BoundIdentity is the user-assigned identity of tenant with client ID
	// clientID (store.ErrNotFound when there is none) and the name of the
	// cluster's binding for it ("" when the cluster has none).
	BoundIdentity(c Cluster, tenant, clientID string) (store.Principal, string, error)
}

// Reviewer is the cluster's API server as the proxy asks it.
type Reviewer interface {
	// ReviewToken is who a service-account token for audience belongs to
	// (TokenReview); an error when it is not authenticated.
	ReviewToken(ctx context.Context, token, audience string) (user string, groups []string, err error)
	// Allowed is whether user may do verb on resource of group
	// (SubjectAccessReview).
	Allowed(ctx context.Context, user string, groups []string, verb, group, resource string) (bool, error)
}

// Proxy answers token requests of one azsim.
type Proxy struct {
	Dir      Directory
	Reviewer Reviewer
	Logger   *slog.Logger
	// OnToken counts token requests (azsim's token statistics); may be nil.
	OnToken func()
}

// Handler is Entra ID's endpoints as the proxy serves them: discovery as
// Entra's, the token endpoint with identity binding's client
// authentication.
func (p *Proxy) Handler(ent *entra.Handler) http.Handler {
	h := ent.WithClientAuth(p.Auth)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			http.Error(w, "the AKS token proxy is served over TLS only", http.StatusBadRequest)
			return
		}
		if p.Logger != nil {
			p.Logger.Debug("token proxy request", "sni", r.TLS.ServerName, "method", r.Method, "path", r.URL.Path)
		}
		if r.Method == http.MethodPost && p.OnToken != nil {
			p.OnToken()
		}
		h.ServeHTTP(w, r)
	})
}

// TLSConfig serves cert to clients that ask for the server name of a
// cluster azsim knows, and refuses the rest.
func (p *Proxy) TLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if _, err := p.Dir.ClusterByServerName(hello.ServerName); err != nil {
			return nil, err
		}
		return &cert, nil
	}}
}

// Auth is the proxy's check of a token request (an entra.ClientAuth): the
// cluster (by server name) has an identity binding for the managed
// identity client_id names; the assertion is a service-account token of
// that cluster for api://AKSIdentityBinding (TokenReview); and the
// cluster's RBAC lets that service account use the identity
// (SubjectAccessReview). The token is then the identity's.
func (p *Proxy) Auth(r *http.Request, tenant, clientID string) (store.Principal, error) {
	if r.TLS == nil {
		return store.Principal{}, entra.NewOAuthError(http.StatusBadRequest, "invalid_request", 0, "AKS token proxy: served over TLS only")
	}
	c, err := p.Dir.ClusterByServerName(r.TLS.ServerName)
	if err != nil {
		return store.Principal{}, entra.NewOAuthError(http.StatusBadRequest, "invalid_request", 0, err.Error())
	}
	id, binding, err := p.boundIdentity(c, tenant, clientID)
	if err != nil {
		return store.Principal{}, err
	}
	f := r.PostForm
	if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || f.Get("client_assertion") == "" {
		return store.Principal{}, entra.NewOAuthError(http.StatusBadRequest, "invalid_request", 0,
			"AKS token proxy: the request must carry the pod's service-account token as client_assertion (client_assertion_type urn:ietf:params:oauth:client-assertion-type:jwt-bearer)")
	}
	user, groups, err := p.Reviewer.ReviewToken(r.Context(), f.Get("client_assertion"), Audience)
	if err != nil {
		return store.Principal{}, entra.NewOAuthError(http.StatusUnauthorized, "invalid_client", 0,
			fmt.Sprintf("AKS token proxy: the client assertion is not a valid service-account token of cluster %s for audience %s: %v", c.Name, Audience, err))
	}
	allowed, err := p.Reviewer.Allowed(r.Context(), user, groups, Verb, Group, clientID)
	if err != nil {
		return store.Principal{}, entra.NewOAuthError(http.StatusServiceUnavailable, "temporarily_unavailable", 0, "AKS token proxy: "+err.Error())
	}
	if !allowed {
		return store.Principal{}, entra.NewOAuthError(http.StatusForbidden, "unauthorized_client", 0,
			fmt.Sprintf("AKS token proxy: %s is not allowed to use managed identity %s (identity binding %s): no ClusterRole binds verb %s on %s/%s to it",
				user, clientID, binding, Verb, Group, clientID))
	}
	return id, nil
}

// boundIdentity is the identity clientID names with the cluster's binding
// for it, or the OAuth error that says which is missing.
func (p *Proxy) boundIdentity(c Cluster, tenant, clientID string) (store.Principal, string, error) {
	id, binding, err := p.Dir.BoundIdentity(c, tenant, clientID)
	if errors.Is(err, store.ErrNotFound) {
		return id, "", entra.NewOAuthError(http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory '%s': identity binding needs a user-assigned managed identity's client ID.", clientID, tenant))
	}
	if err != nil {
		return id, "", entra.NewOAuthError(http.StatusServiceUnavailable, "temporarily_unavailable", 0, "AKS token proxy: "+err.Error())
	}
	if binding == "" {
		return id, "", entra.NewOAuthError(http.StatusBadRequest, "unauthorized_client", 0,
			fmt.Sprintf("AKS token proxy: cluster %s has no identity binding for managed identity %s: az aks identity-binding create -g %s --cluster-name %s -n <name> --managed-identity-resource-id %s",
				c.Name, clientID, c.ResourceGroup, c.Name, id.ResourceID))
	}
	return id, binding, nil
}
