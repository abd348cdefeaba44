// Package v1alpha1 is the SecretSync API of group secret-sync.x-k8s.io,
// field for field kubernetes-sigs/secrets-store-sync-controller's, so that
// the same YAML works with that controller and with kvmount's. A
// SecretSync names the Secret it keeps (its own name, in its namespace),
// the SecretProviderClass that says where the values come from, and the
// service account whose tokens the provider is given.
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and version of the API.
const (
	Group   = "secret-sync.x-k8s.io"
	Version = "v1alpha1"
	Kind    = "SecretSync"
)

// Resource is the API's one resource.
var Resource = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "secretsyncs"}

// APIVersion is Group/Version, as an ownerReference names it.
const APIVersion = Group + "/" + Version

// Reserved is the label and annotation key (and prefix) that belong to the
// controller: every Secret it writes carries the label ManagedLabel = "".
const (
	Reserved     = "secrets-store.sync.x-k8s.io"
	ManagedLabel = Reserved
)

// FieldManager is the controller's server-side apply field manager, as
// upstream's, so that either controller can take over the other's Secrets.
const FieldManager = "secrets-store-sync-controller"

// SecretObjectData copies one file of the provider's answer to one key.
type SecretObjectData struct {
	SourcePath string `json:"sourcePath"`
	TargetKey  string `json:"targetKey"`
}

// SecretObject is the Secret to keep: its type, data, labels and
// annotations.
type SecretObject struct {
	Type        string             `json:"type,omitempty"`
	Data        []SecretObjectData `json:"data"`
	Labels      map[string]string  `json:"labels,omitempty"`
	Annotations map[string]string  `json:"annotations,omitempty"`
}

// SecretSyncSpec is what to sync, from where, as whom.
type SecretSyncSpec struct {
	SecretSyncControllerName string       `json:"secretSyncControllerName,omitempty"`
	SecretProviderClassName  string       `json:"secretProviderClassName"`
	ServiceAccountName       string       `json:"serviceAccountName"`
	SecretObject             SecretObject `json:"secretObject"`
	ForceSynchronization     string       `json:"forceSynchronization,omitempty"`
}

// SecretSyncStatus is what the controller last did.
type SecretSyncStatus struct {
	SyncHash               string             `json:"syncHash,omitempty"`
	LastSuccessfulSyncTime *metav1.Time       `json:"lastSuccessfulSyncTime,omitempty"`
	Conditions             []metav1.Condition `json:"conditions,omitempty"`
}

// SecretSync keeps the Secret of its name filled from a secret store.
type SecretSync struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              SecretSyncSpec   `json:"spec"`
	Status            SecretSyncStatus `json:"status,omitempty"`
}

// SecretSyncList is a list of SecretSyncs.
type SecretSyncList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SecretSync `json:"items"`
}

// Condition types and reasons, upstream's vocabulary (its
// internal/controller/conditions.go), so that tools reading either
// controller's status read both.
const (
	ConditionCreated = "SecretCreated"
	ConditionUpdated = "SecretUpdated"

	ReasonSyncStarting          = "SyncStarting"
	ReasonNoUpdatesAttemptedYet = "NoUpdatesAttemptedYet"
	ReasonCreateSuccessful      = "CreateSuccessful"
	ReasonSecretUpToDate        = "SecretUpToDate"

	ReasonProviderError            = "ProviderError"
	ReasonInvalidLabel             = "InvalidClusterSecretLabelError"
	ReasonInvalidAnnotation        = "InvalidClusterSecretAnnotationError"
	ReasonControllerSyncError      = "ControllerSyncError"
	ReasonControllerPatchError     = "ControllerPatchError"
	ReasonClassMisconfigured       = "SecretProviderClassMisconfigured"
	ReasonRemoteSecretStoreFailure = "RemoteSecretStoreFetchFailed"

	MessageCreateSuccessful = "Secret created successfully."
	MessageUpToDate         = "Secret contains last observed values."
)
