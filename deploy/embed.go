// Package deploy embeds the manifests and the chart the local environment
// installs, so that `kvmount up` works from its binary alone. deploy/*.yaml
// are rendered from the chart (make manifests).
package deploy

import "embed"

// Manifests holds crds/*.yaml, csidriver.yaml and the driver's and
// provider's RBAC, which the local environment applies when its nodes run
// the driver and provider as host processes (the fake runtime).
//
//go:embed crds/*.yaml csidriver.yaml kubernetes-1.35+/csidriver.yaml rbac.yaml rbac-secret-sync.yaml rbac-provider-azure.yaml rbac-aggregated.yaml
var Manifests embed.FS

// Chart holds the Helm charts — helm/kvmount (the driver chart's layout)
// and helm/kvmount-azure (the Azure provider chart's) — which the local
// environment installs when its nodes run containers.
//
//go:embed all:helm/kvmount all:helm/kvmount-azure
var Chart embed.FS
