#!/usr/bin/env bash
# Builds the local cluster's binaries into bin/: etcd, kube-apiserver,
# kube-controller-manager (garbage collector, namespaces, service accounts,
# DaemonSets), kube-scheduler (so manifests without nodeName run as on a
# cluster), kubelet, kube-proxy (the kubernetes Service for in-cluster
# clients), kubectl (what a user types, in the demo), fakecri and nodeinit. The first build takes minutes; afterwards it is skipped unless
# the pinned versions (go.mod, go.sum) or fakecri's source change, so that
# `make test` and `make demo` stay fast.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../bin}
mkdir -p "$out"
out=$(cd "$out" && pwd)

stamp=$(cat "$here/go.mod" "$here/go.sum" "$here"/fakecri/*.go "$here"/nodeinit/*.go "$0" | sha256sum | cut -c1-16)
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl fakecri nodeinit)
if [ -f "$out/.cluster-stamp" ] && [ "$(cat "$out/.cluster-stamp")" = "$stamp" ]; then
  missing=0
  for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing=1; done
  if [ $missing = 0 ]; then
    echo "cluster-bins: up to date in $out"
    exit 0
  fi
fi

cd "$here"
kube=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
minor=$(echo "$kube" | cut -d. -f2)
ld="-s -w -X k8s.io/component-base/version.gitVersion=$kube -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
build() { # name package
  local start=$SECONDS
  echo "cluster-bins: building $1 ($2) ..."
  go build -trimpath -ldflags "$ld" -o "$out/$1.tmp" "$2"
  mv "$out/$1.tmp" "$out/$1"
  echo "cluster-bins: built $1 in $((SECONDS - start))s"
}
build fakecri ./fakecri
build nodeinit ./nodeinit
build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kubelet k8s.io/kubernetes/cmd/kubelet
build kube-proxy k8s.io/kubernetes/cmd/kube-proxy
build kubectl k8s.io/kubernetes/cmd/kubectl
echo "$stamp" > "$out/.cluster-stamp"
