//go:build tools

// Package tools records the Kubernetes 1.32 binaries this module builds
// (tools/cluster/build.sh), for the version matrix of make test: AKS's
// long-term-support version.
//
// Its go.mod pins every staging module to v0.32.13 but one: the module proxy
// refuses k8s.io/endpointslice v0.32.13 (its .info is served, its .zip is
// not; checked 2026-12-04 and 2026-12-07), so that one is v0.32.12, the
// nearest patch release it serves (the EndpointSlice helpers that kube-proxy
// and kube-controller-manager link).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
