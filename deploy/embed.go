// Package deploy embeds the manifests the local environment applies, so
// that `kvmount up` works from its binary alone.
package deploy

import "embed"

// Manifests holds crds/*.yaml and csidriver.yaml.
//
//go:embed crds/*.yaml csidriver.yaml
var Manifests embed.FS
