package azsim

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"kvmount.dev/kvmount/internal/azsim/nmi"
	"kvmount.dev/kvmount/internal/azsim/store"
)

func init() {
	register("aks pod-identity add", podIdentityAdd)
}

// kube returns the dynamic client for the cluster NMI and pod-identity
// verbs talk to, made from Config.Kubeconfig on first use.
func (s *Server) kube() (dynamic.Interface, error) {
	if s.cfg.Kubeconfig == "" {
		return nil, invalid("azsim serve was started without --kubeconfig: pod identity needs the cluster's API server")
	}
	s.kubeOnce.Do(func() {
		cfg, err := clientcmd.BuildConfigFromFlags("", s.cfg.Kubeconfig)
		if err != nil {
			s.kubeErr = fmt.Errorf("kubeconfig %s: %w", s.cfg.Kubeconfig, err)
			return
		}
		// NMI reads from watches; the admin verbs write a few objects.
		cfg.QPS, cfg.Burst = 50, 100
		s.kubeClient, s.kubeErr = dynamic.NewForConfig(cfg)
		if s.kubeErr == nil {
			s.nmiCache = nmi.NewCache(s.kubeClient)
		}
	})
	return s.kubeClient, s.kubeErr
}

// ensureNMI starts an NMI for each node (scale-set instance) of cluster c,
// backed by that instance's IMDS. Without a kubeconfig there is no NMI.
func (s *Server) ensureNMI(c store.Cluster) error {
	if s.cfg.Kubeconfig == "" {
		return nil
	}
	if _, err := s.kube(); err != nil {
		return err
	}
	var m store.Machine
	if err := s.view(func(tx *store.Tx) error {
		var err error
		m, err = s.machine(tx, true, c.NodeResourceGroup, c.ScaleSet)
		return err
	}); err != nil {
		return err
	}
	for i := range m.Instances {
		imdsURL, err := s.IMDSURL(InstanceKey(m, i))
		if err != nil {
			return err
		}
		node := ComputerName(m.Name, i)
		if err := s.ensureEndpoint("nmi:"+node, nmi.New(nmi.Config{Cache: s.nmiCache, IMDSURL: imdsURL, Node: node, Address: s.nodeAddress(node)})); err != nil {
			return err
		}
	}
	return nil
}

// nodeAddress is the network address of the machine with that computer
// name (Config.NodeAddresses), or "".
func (s *Server) nodeAddress(name string) string {
	for addr, n := range s.cfg.NodeAddresses {
		if n == name {
			return addr
		}
	}
	return ""
}

// NMIURL is the NMI endpoint of a node (a scale-set instance's computer name).
func (s *Server) NMIURL(node string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.endpoints["nmi:"+node]
	if !ok {
		return "", fmt.Errorf("no NMI for node %q: %w", node, store.ErrNotFound)
	}
	return e.url, nil
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
func podIdentityAdd(ctx context.Context, s *Server, a PodIdentityArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--cluster-name", a.ClusterName, "--namespace", a.Namespace,
		"--name/-n", a.Name, "--identity-resource-id", a.IdentityResourceID); err != nil {
		return nil, err
	}
	kube, err := s.kube()
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
