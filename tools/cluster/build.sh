#!/usr/bin/env bash
# Builds the local cluster's binaries and links them into OUT (bin/):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy, kubectl (this module's Kubernetes, 1.37), fakecri and nodeinit.
#
#   build.sh OUT              the binaries above, nothing else (make demo,
#                             kvmount up)
#   build.sh OUT 1.33 1.35    also the six Kubernetes binaries of each
#                             k8s-<minor>/ module, linked as OUT/k8s-<minor>
#                             (the version matrix of make test)
#
# Built binaries live in a per-user cache outside the clone,
#   ${KVMOUNT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kvmount}/k8s/<version>-<stamp>/
# so that a second clone, or CI's clean checkout, links them at once instead of
# spending ~15 minutes per Kubernetes version. The stamp is a hash of what the
# binaries are built from (the module's go.mod and go.sum, the build recipe
# below, and for fakecri and nodeinit their sources): a changed pin builds a new
# entry, and `make clean-cache` removes them all. An entry appears only once it
# is complete (built in a temporary directory, then renamed), and builds of one
# entry by two clones at once are serialised by a lock.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../bin}
shift || true
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache=${KVMOUNT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kvmount}/k8s
mkdir -p "$cache"
kube_bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

# recipe is how a binary is built; it is part of every stamp, so changing it
# (and only it, not comments of this script) rebuilds.
recipe='go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$kube -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"'

# heartbeat what pid: a line every 30 s while pid runs, so that a long build
# never looks hung.
heartbeat() {
  local what=$1 pid=$2 start=$SECONDS next=30
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ $((SECONDS - start)) -ge $next ]; then
      echo "cluster-bins: still building $what, $((SECONDS - start))s so far"
      next=$((next + 30))
    fi
  done
}

# build dir name package: one binary, with Kubernetes' version stamped in
# (the module in the working directory pins it).
build() {
  local dir=$1 name=$2 pkg=$3 start=$SECONDS kube minor pid
  kube=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
  minor=$(echo "$kube" | cut -d. -f2)
  echo "cluster-bins: building $name ($pkg, Kubernetes $kube) ..."
  eval "$recipe -o \"\$dir/\$name\" \"\$pkg\"" &
  pid=$!
  heartbeat "$name (Kubernetes $kube)" "$pid"
  wait "$pid"
  echo "cluster-bins: built $name in $((SECONDS - start))s"
}

# entry module label stamp bins...: prints the cache entry holding bins built
# in module, building it first unless it is complete already.
entry() {
  local mod=$1 label=$2 stamp=$3
  shift 3
  local dir="$cache/$label-$stamp" b
  if [ ! -d "$dir" ]; then
    exec 9>"$cache/.lock-$label-$stamp"
    flock 9
    if [ ! -d "$dir" ]; then
      local tmp="$dir.tmp.$$"
      rm -rf "$tmp"
      mkdir -p "$tmp"
      (cd "$mod" && for b in "$@"; do build "$tmp" "${b%%=*}" "${b#*=}"; done) >&2 || { rm -rf "$tmp"; exit 1; }
      mv "$tmp" "$dir"
    fi
    exec 9>&-
    rm -f "$cache/.lock-$label-$stamp"
  else
    echo "cluster-bins: $label up to date in $dir" >&2
  fi
  echo "$dir"
}

stamp_of() { { cat "$@"; echo "$recipe"; } | sha256sum | cut -c1-16; }
kube_pkgs() { for b in "${kube_bins[@]}"; do echo "$b=k8s.io/kubernetes/cmd/$b"; done; }
kube_version() { (cd "$1" && go list -m -f '{{.Version}}' k8s.io/kubernetes); }

# This module: Kubernetes, etcd, and the node tools.
main=$(entry "$here" "kubernetes-$(kube_version "$here")" "$(stamp_of "$here/go.mod" "$here/go.sum")" \
  etcd=go.etcd.io/etcd/server/v3 $(kube_pkgs))
node=$(entry "$here" node-tools "$(stamp_of "$here/go.mod" "$here/go.sum" "$here"/fakecri/*.go "$here"/nodeinit/*.go)" \
  fakecri=./fakecri nodeinit=./nodeinit)
for b in etcd "${kube_bins[@]}"; do ln -sfn "$main/$b" "$out/$b"; done
for b in fakecri nodeinit; do ln -sfn "$node/$b" "$out/$b"; done

# The version matrix, only the minors asked for.
for minor in "$@"; do
  mod="$here/k8s-$minor"
  if [ ! -f "$mod/go.mod" ]; then
    echo "cluster-bins: no module for Kubernetes $minor ($mod/go.mod); the matrix has: $(cd "$here" && ls -d k8s-* | sed 's/^k8s-//' | tr '\n' ' ')" >&2
    exit 1
  fi
  dir=$(entry "$mod" "kubernetes-$(kube_version "$mod")" "$(stamp_of "$mod/go.mod" "$mod/go.sum")" $(kube_pkgs))
  rm -rf "$out/k8s-$minor.old"
  [ -d "$out/k8s-$minor" ] && [ ! -L "$out/k8s-$minor" ] && mv "$out/k8s-$minor" "$out/k8s-$minor.old" && rm -rf "$out/k8s-$minor.old"
  ln -sfn "$dir" "$out/k8s-$minor"
done
echo "cluster-bins: linked into $out from $cache"
