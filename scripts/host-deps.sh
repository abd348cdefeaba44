#!/usr/bin/env bash
# Installs the host tools that `make test` needs when a fresh machine lacks
# them: unshare (util-linux) and ip (iproute2) for the loopback-only network
# namespace, mount/umount for tmpfs. Debian packages only.
set -euo pipefail
need=()
command -v unshare >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
command -v mount >/dev/null || need+=(mount)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "host-deps: missing ${need[*]}; install them as root (apt-get install ${need[*]})" >&2
  exit 1
fi
echo "host-deps: installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
