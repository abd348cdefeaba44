// Package deploy embeds the manifests the local environment applies, so
// that `kvmount up` works from its binary alone.
package deploy

import "embed"

// Manifests holds crds/*.yaml, csidriver.yaml and the driver's and provider's RBAC.
//
//go:embed crds/*.yaml csidriver.yaml rbac.yaml rbac-secret-sync.yaml rbac-provider-azure.yaml
var Manifests embed.FS
