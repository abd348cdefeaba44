// Package podidentity holds aad-pod-identity's CustomResourceDefinitions
// (AzureIdentity, AzureIdentityBinding, AzurePodIdentityException,
// AzureAssignedIdentity), which azsim's NMI and `aks pod-identity add`
// use. They belong to the local test environment, which applies them, and
// not to kvmount's manifests: a cluster that uses pod identity has them
// from aad-pod-identity.
package podidentity

import _ "embed"

// CRDs is the CustomResourceDefinitions as one multi-document YAML.
//
//go:embed crds.yaml
var CRDs []byte
