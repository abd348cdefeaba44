package arm

import (
	"context"
	"fmt"

	"kvmount.dev/kvmount/internal/azsim/hosts"
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

// IdentityBindingArgs is `aks identity-binding create|show|list|delete`.
type IdentityBindingArgs struct {
	ResourceGroup string `json:"resourceGroup"`
	ClusterName   string `json:"clusterName"`
	Name          string `json:"name"`
	// ManagedIdentityResourceID is the user-assigned identity to bind.
	ManagedIdentityResourceID string `json:"managedIdentityResourceId"`
}

func identityBindingCreate(_ context.Context, s *Env, a IdentityBindingArgs) (any, error) {
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

func identityBindingShow(_ context.Context, s *Env, a IdentityBindingArgs) (any, error) {
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

func identityBindingList(_ context.Context, s *Env, a IdentityBindingArgs) (any, error) {
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

func identityBindingDelete(_ context.Context, s *Env, a IdentityBindingArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--cluster-name", a.ClusterName, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	return nil, s.update(func(tx *store.Tx) error {
		return store.Delete(tx, store.BucketIdentityBindings, store.Path(a.ResourceGroup, a.ClusterName, a.Name))
	})
}

// identityBindingJSON is a binding as ARM shows it.
func (s *Env) identityBindingJSON(b store.IdentityBinding) (map[string]any, error) {
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
			"oidcIssuer":        map[string]any{"oidcIssuerUrl": hosts.LoginURL + "/" + p.TenantID + "/identitybinding/" + p.ClientID + "/"},
			"provisioningState": "Succeeded",
		},
	}, nil
}
