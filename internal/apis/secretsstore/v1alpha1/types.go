// Package v1alpha1 is the deprecated, still-served version of the
// secrets-store API. Its schema equals v1's but for SecretProviderClass's
// legacy status.byPod list, kept so that old objects validate.
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
)

// ByPodStatus is a pod that once wrote the class's status.
type ByPodStatus struct {
	ID        string `json:"id,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

// SecretProviderClassStatus is the legacy status.
type SecretProviderClassStatus struct {
	ByPod []*ByPodStatus `json:"byPod,omitempty"`
}

// SecretProviderClass is v1's with the legacy status.
type SecretProviderClass struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              v1.SecretProviderClassSpec `json:"spec,omitempty"`
	Status            SecretProviderClassStatus  `json:"status,omitempty"`
}
