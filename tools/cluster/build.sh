#!/usr/bin/env bash
# Builds the local cluster's binaries into bin/: etcd, kube-apiserver,
# kube-controller-manager (garbage collector, namespaces, service accounts,
# DaemonSets), kube-scheduler (so manifests without nodeName run as on a
# cluster), kubelet, kube-proxy (the kubernetes Service for in-cluster
# clients), kubectl (what a user types, in the demo), fakecri and nodeinit,
# from this module (Kubernetes 1.37).
#
# Then the version matrix: each k8s-<minor>/ module (Kubernetes <minor>,
# its staging modules pinned to the matching v0.x) builds the same six
# Kubernetes binaries into bin/k8s-<minor>/.
#
# The first build takes minutes per Kubernetes version; afterwards each is
# skipped unless its pinned versions (go.mod, go.sum), fakecri's or
# nodeinit's source or this script change, so that `make test` and
# `make demo` stay fast.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
self="$here/$(basename "$0")"
out=${1:-$here/../../bin}
mkdir -p "$out"
out=$(cd "$out" && pwd)
kube_bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

# up_to_date dir stamp bins...: the stamp matches and every binary is there.
up_to_date() {
  local dir=$1 stamp=$2
  shift 2
  [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ] || return 1
  for b in "$@"; do [ -x "$dir/$b" ] || return 1; done
}

# build dir name package: one binary, with Kubernetes' version stamped in
# (the module in the working directory pins it).
build() {
  local dir=$1 name=$2 pkg=$3 start=$SECONDS kube minor ld
  kube=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
  minor=$(echo "$kube" | cut -d. -f2)
  ld="-s -w -X k8s.io/component-base/version.gitVersion=$kube -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  echo "cluster-bins: building $name ($pkg, Kubernetes $kube) ..."
  go build -trimpath -ldflags "$ld" -o "$dir/$name.tmp" "$pkg"
  mv "$dir/$name.tmp" "$dir/$name"
  echo "cluster-bins: built $name in $((SECONDS - start))s"
}

stamp=$(cat "$here/go.mod" "$here/go.sum" "$here"/fakecri/*.go "$here"/nodeinit/*.go "$self" | sha256sum | cut -c1-16)
if up_to_date "$out" "$stamp" etcd fakecri nodeinit "${kube_bins[@]}"; then
  echo "cluster-bins: up to date in $out"
else
  cd "$here"
  build "$out" fakecri ./fakecri
  build "$out" nodeinit ./nodeinit
  build "$out" etcd go.etcd.io/etcd/server/v3
  for b in "${kube_bins[@]}"; do build "$out" "$b" "k8s.io/kubernetes/cmd/$b"; done
  echo "$stamp" > "$out/.stamp"
fi

for mod in "$here"/k8s-*/; do
  minor=$(basename "$mod" | sed 's/^k8s-//')
  dir="$out/k8s-$minor"
  stamp=$(cat "$mod/go.mod" "$mod/go.sum" "$self" | sha256sum | cut -c1-16)
  if up_to_date "$dir" "$stamp" "${kube_bins[@]}"; then
    echo "cluster-bins: Kubernetes $minor up to date in $dir"
    continue
  fi
  mkdir -p "$dir"
  cd "$mod"
  for b in "${kube_bins[@]}"; do build "$dir" "$b" "k8s.io/kubernetes/cmd/$b"; done
  echo "$stamp" > "$dir/.stamp"
done
