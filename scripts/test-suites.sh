#!/usr/bin/env bash
# make test's suites, run at the same time because most of their time is
# spent waiting on kubelets, watches and polls rather than on the CPU, each
# in its own loopback-only network namespace:
#   - every package but test/e2e, with the race detector, on Kubernetes 1.37
#     (in the foreground, its output streamed);
#   - test/e2e, with the race detector, on 1.37, from the start: it is the
#     longest suite, and inside go test ./... it began only once the other
#     packages freed a slot;
#   - MATRIX_TESTS on each version of MATRIX in turn.
# More suites at once (test/e2e in two shards) overloaded these 2 cores:
# clusters took three times as long to start, and the whole took longer.
# The background suites' output goes to bin/test-*.log and is printed once
# all are done. Exits non-zero when any fails.
#
#   test-suites.sh BIN "1.32 1.35" 'TestA|TestB' [go test args...]
set -uo pipefail
bin=$1 matrix=$2 matrix_tests=$3
shift 3
go=${GO:-go}
cd "$(dirname "$0")/.."

declare -A pids
background() {
  local name=$1
  shift
  : >"$bin/test-$name.log"
  ("$@"; r=$?; echo "test-suites: $name finished: exit $r after $((SECONDS - start))s"; exit $r) >"$bin/test-$name.log" 2>&1 &
  pids[$name]=$!
  echo "test-suites: $name runs alongside; its log: $bin/test-$name.log"
}

matrix() {
  for v in $matrix; do
    echo "=== Kubernetes $v: $matrix_tests"
    KVMOUNT_KUBE_VERSION=$v KVMOUNT_BIN_DIR=$bin scripts/netns-run.sh "$go" test -count=1 -timeout 30m -v \
      -run "^($matrix_tests)\$" ./test/e2e ./internal/localcluster || return 1
  done
}

e2e() { KVMOUNT_BIN_DIR=$bin scripts/netns-run.sh "$go" test -race -count=1 -timeout 45m -v "$@" ./test/e2e; }

start=$SECONDS
background e2e e2e "$@"
background matrix matrix

mapfile -t pkgs < <("$go" list ./... | grep -v '/test/e2e$')
# One package at a time: with test/e2e and the matrix that makes three
# suites at once, as many as these 2 cores carried well.
KVMOUNT_BIN_DIR=$bin scripts/netns-run.sh "$go" test -race -p 1 -count=1 -timeout 60m -v "$@" "${pkgs[@]}"
rc=$?
echo "test-suites: every package but test/e2e on Kubernetes 1.37: exit $rc after $((SECONDS - start))s"

for name in e2e matrix; do
  wait "${pids[$name]}"
  r=$?
  cat "$bin/test-$name.log"
  [ "$r" -eq 0 ] || rc=1
done
echo "test-suites: all done after $((SECONDS - start))s: exit $rc"
exit "$rc"
