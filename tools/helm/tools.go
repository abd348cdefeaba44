//go:build tools

// Package tools pins Helm, built into bin/helm so that `make test` can lint
// and render the chart in deploy/helm without a download from outside the
// module proxy.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
