package arm

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"kvmount.dev/kvmount/internal/azsim/store"
)

func init() {
	register("aks pod-identity add", podIdentityAdd)
}

// PodIdentityArgs is `aks pod-identity add`.
type PodIdentityArgs struct {
	ResourceGroup      string `json:"resourceGroup"`
	ClusterName        string `json:"clusterName"`
	Namespace          string `json:"namespace"`
	Name               string `json:"name"`
	IdentityResourceID string `json:"identityResourceId"`
	BindingSelector    string `json:"bindingSelector,omitempty"`
}

var (
	azureIdentityGVR = schema.GroupVersionResource{Group: "aadpodidentity.k8s.io", Version: "v1", Resource: "azureidentities"}
	bindingGVR       = schema.GroupVersionResource{Group: "aadpodidentity.k8s.io", Version: "v1", Resource: "azureidentitybindings"}
)

// podIdentityAdd does what the AKS add-on does: assigns the identity to the
// node pool's scale set and creates an AzureIdentity and an
// AzureIdentityBinding (selector = the pod identity's name unless given) in
// the namespace.
func podIdentityAdd(ctx context.Context, s *Env, a PodIdentityArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--cluster-name", a.ClusterName, "--namespace", a.Namespace,
		"--name/-n", a.Name, "--identity-resource-id", a.IdentityResourceID); err != nil {
		return nil, err
	}
	kube, err := s.host.Kube()
	if err != nil {
		return nil, err
	}
	var c store.Cluster
	var p store.Principal
	if err := s.view(func(tx *store.Tx) error {
		var err error
		if c, err = store.Get[store.Cluster](tx, store.BucketClusters, store.Path(a.ResourceGroup, a.ClusterName)); err != nil {
			return notFound("The Resource 'Microsoft.ContainerService/managedClusters/%s' under resource group '%s' was not found.", a.ClusterName, a.ResourceGroup)
		}
		if p, err = store.FindUserAssigned(tx, a.IdentityResourceID); err != nil {
			return notFound("The user-assigned identity '%s' was not found.", a.IdentityResourceID)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if _, err := s.identityAssign(AssignArgs{ResourceGroup: c.NodeResourceGroup, Name: c.ScaleSet, Identities: []string{p.ResourceID}}, true); err != nil {
		return nil, err
	}
	selector := orDefault(a.BindingSelector, a.Name)
	objs := []struct {
		gvr schema.GroupVersionResource
		obj *unstructured.Unstructured
	}{
		{azureIdentityGVR, crd("AzureIdentity", a.Namespace, a.Name, map[string]any{"type": int64(0), "resourceID": p.ResourceID, "clientID": p.ClientID})},
		{bindingGVR, crd("AzureIdentityBinding", a.Namespace, a.Name+"-binding", map[string]any{"azureIdentity": a.Name, "selector": selector})},
	}
	for _, o := range objs {
		_, err := kube.Resource(o.gvr).Namespace(a.Namespace).Create(ctx, o.obj, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			_, err = kube.Resource(o.gvr).Namespace(a.Namespace).Update(ctx, o.obj, metav1.UpdateOptions{})
		}
		if err != nil {
			return nil, invalid("create %s %s/%s: %v (are the aadpodidentity.k8s.io CRDs installed? see deploy/crds)", o.obj.GetKind(), a.Namespace, o.obj.GetName(), err)
		}
	}
	return map[string]any{"podIdentityProfile": map[string]any{"enabled": true, "userAssignedIdentities": []map[string]any{{
		"name": a.Name, "namespace": a.Namespace, "bindingSelector": selector, "provisioningState": "Assigned",
		"identity": map[string]any{"clientId": p.ClientID, "objectId": p.ObjectID, "resourceId": p.ResourceID}}}}}, nil
}

func crd(kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "aadpodidentity.k8s.io/v1", "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
}
