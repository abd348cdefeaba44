// Package v1 holds the SecretProviderClass and SecretProviderClassPodStatus
// types of group secrets-store.csi.x-k8s.io, field for field the upstream
// driver's, so that existing objects and manifests work unchanged. v1 is
// the stored version; v1alpha1 is served with the same schema.
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and versions of the API.
const (
	Group   = "secrets-store.csi.x-k8s.io"
	Version = "v1"
)

// Resources of the API.
var (
	SecretProviderClassResource          = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "secretproviderclasses"}
	SecretProviderClassPodStatusResource = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "secretproviderclasspodstatuses"}
)

// InternalNodeLabel marks a SecretProviderClassPodStatus with its node.
const InternalNodeLabel = "internal.secrets-store.csi.k8s.io/node-name"

// Provider names the provider plugin (its socket is <dir>/<provider>.sock).
type Provider string

// SecretObjectData maps a mounted file to a key of a synced Secret.
type SecretObjectData struct {
	// ObjectName is the file's path in the mount (an objectAlias or name).
	ObjectName string `json:"objectName,omitempty"`
	// Key is the data key in the Secret.
	Key string `json:"key,omitempty"`
}

// SecretObject is a Kubernetes Secret kept in sync with mounted files.
type SecretObject struct {
	SecretName  string              `json:"secretName,omitempty"`
	Type        string              `json:"type,omitempty"`
	Labels      map[string]string   `json:"labels,omitempty"`
	Annotations map[string]string   `json:"annotations,omitempty"`
	Data        []*SecretObjectData `json:"data,omitempty"`
}

// SecretProviderClassSpec names the provider, its parameters and the
// Secrets to sync.
type SecretProviderClassSpec struct {
	Provider      Provider          `json:"provider,omitempty"`
	Parameters    map[string]string `json:"parameters,omitempty"`
	SecretObjects []*SecretObject   `json:"secretObjects,omitempty"`
}

// SecretProviderClassStatus is empty, as upstream's.
type SecretProviderClassStatus struct{}

// SecretProviderClass says which provider mounts what.
type SecretProviderClass struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              SecretProviderClassSpec   `json:"spec,omitempty"`
	Status            SecretProviderClassStatus `json:"status,omitempty"`
}

// SecretProviderClassObject is one fetched object's ID and version.
type SecretProviderClassObject struct {
	ID      string `json:"id,omitempty"`
	Version string `json:"version,omitempty"`
}

// SecretProviderClassPodStatusStatus is the observed mount of one pod.
type SecretProviderClassPodStatusStatus struct {
	PodName                 string                      `json:"podName,omitempty"`
	SecretProviderClassName string                      `json:"secretProviderClassName,omitempty"`
	Mounted                 bool                        `json:"mounted,omitempty"`
	TargetPath              string                      `json:"targetPath,omitempty"`
	Objects                 []SecretProviderClassObject `json:"objects,omitempty"`
}

// SecretProviderClassPodStatus records what is mounted for a pod; named
// <pod>-<namespace>-<class>, owned by the pod.
type SecretProviderClassPodStatus struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Status            SecretProviderClassPodStatusStatus `json:"status,omitempty"`
}
