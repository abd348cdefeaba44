#!/usr/bin/env bash
# Runs a build once per distinct input and links its output into the clone,
# so that a second clone, or CI's clean checkout, reuses it at once (as
# tools/cluster/build.sh does for the Kubernetes binaries):
#
#   cached.sh NAME LINK STAMP -- COMMAND...
#
# COMMAND writes its output to the directory in $CACHED_OUT (a line on
# standard error every CACHED_HEARTBEAT, 30, seconds says it still runs); the
# directory
# becomes ${KVMOUNT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kvmount}/NAME/<STAMP>
# and LINK a symbolic link to it, or with CACHED_FILE=1 to the file of
# LINK's name in it (a single binary). STAMP must name everything the output is
# built from; an empty STAMP means "not cacheable" (a working tree with
# changes): COMMAND then writes into LINK itself, a plain directory. An
# entry appears only once complete (built in a temporary directory, then
# renamed); two clones building one entry at once are serialised by a lock.
# Entries keyed by commit (the images) would grow without end, so only the
# CACHED_KEEP (default 8) most recently used entries of NAME are kept: a
# new entry removes the oldest beyond them; a reused one is marked used.
# `make clean-cache` removes every entry.
set -euo pipefail
name=$1 link=$2 stamp=$3
shift 3
[ "${1:-}" = "--" ] && shift

# build runs the command with CACHED_OUT=$1, saying every CACHED_HEARTBEAT
# (30) seconds that it still runs: on an empty Go cache Helm or the images
# take minutes.
build() {
  CACHED_OUT=$1
  export CACHED_OUT
  shift
  "$@" &
  local pid=$! start=$SECONDS every=${CACHED_HEARTBEAT:-30}
  local next=$every
  while kill -0 "$pid" 2>/dev/null; do
    sleep 0.2
    if ((SECONDS - start >= next)); then
      echo "$name: still building, $((SECONDS - start))s so far" >&2
      next=$((next + every))
    fi
  done
  wait "$pid"
}

if [ -z "$stamp" ]; then
  [ -L "$link" ] && rm -f "$link"
  if [ "${CACHED_FILE:-}" = 1 ]; then
    build "$(dirname "$link")" "$@"
  else
    mkdir -p "$link"
    build "$link" "$@"
  fi
  exit
fi

cache=${KVMOUNT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kvmount}/$name
mkdir -p "$cache"
dir=$cache/$stamp
if [ ! -d "$dir" ]; then
  exec 9>"$cache/.lock-$stamp"
  flock 9
  if [ ! -d "$dir" ]; then
    tmp="$dir.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    build "$tmp" "$@" || { rm -rf "$tmp" "$cache/.lock-$stamp"; exit 1; }
    mv "$tmp" "$dir"
    # Oldest use last; lock files and unfinished builds are not entries.
    ls -1t "$cache" | grep -v -e '^\.lock-' -e '\.tmp\.' | tail -n +"$((${CACHED_KEEP:-8} + 1))" |
      while read -r old; do rm -rf "${cache:?}/$old"; done || true
  fi
  exec 9>&-
  rm -f "$cache/.lock-$stamp"
else
  touch "$dir"
  echo "$name: up to date in $dir"
fi
mkdir -p "$(dirname "$link")"
[ -e "$link" ] && [ ! -L "$link" ] && rm -rf "$link"
if [ "${CACHED_FILE:-}" = 1 ]; then
  ln -sfn "$dir/$(basename "$link")" "$link"
else
  ln -sfn "$dir" "$link"
fi
