#!/usr/bin/env bash
# Runs a command inside a fresh network namespace whose only interface is
# loopback, so that nothing it starts can reach anything but 127.0.0.1: no
# Azure host, no 169.254.169.254, no registry. Modules must already be in the
# local cache (`make test-compile` downloads them), hence GOPROXY=off.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "netns-run: the tests start kubelets and mount tmpfs, so they run as root (sudo make test)" >&2
  exit 1
fi
exec unshare --net -- bash -c 'ip link set lo up && export GOPROXY=off && exec "$@"' netns-run "$@"
