#!/usr/bin/env bash
# Installs the host tools and packages that `make test` and `make demo` need
# when a fresh machine lacks them, from Debian packages only:
#   util-linux (unshare, nsenter) and iproute2 (ip): the loopback-only network
#     namespace and each local node's own namespaces;
#   mount: tmpfs;
#   containerd and runc: the local nodes' container runtime;
#   containernetworking-plugins: pod networking (bridge, host-local);
#   iptables and conntrack: kube-proxy, for the kubernetes Service;
#   busybox-static: the busybox image the seed's pods run, built offline;
#   python3-minimal: the charts' values schemas (deploy/helm/values-schema.py).
set -euo pipefail
need=()
command -v unshare >/dev/null && command -v nsenter >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
command -v mount >/dev/null || need+=(mount)
command -v containerd >/dev/null && command -v ctr >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && ! ldd /bin/busybox >/dev/null 2>&1 || need+=(busybox-static)
command -v python3 >/dev/null || need+=(python3-minimal)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "host-deps: missing ${need[*]}; install them as root (apt-get install ${need[*]})" >&2
  exit 1
fi
echo "host-deps: installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
