#!/usr/bin/env bash
# make test's suites, run at the same time because most of their time is
# spent waiting on kubelets, watches and polls rather than on the CPU:
#   - every test of the repository, with the race detector, on Kubernetes
#     1.37 (in the foreground, its output streamed);
#   - MATRIX_TESTS on each version of MATRIX in turn, in its own loopback-only
#     network namespace (its output goes to bin/test-matrix.log and is
#     printed once both are done).
# Exits non-zero when either fails.
#
# Tried on 7 December and measured no faster on these 2 cores, which the
# suites already keep busy: test/e2e started at once beside the other
# packages (about the same wall time), and test/e2e in two shards as well
# (API servers took 20 s to start, image imports 10 s each).
#
#   test-suites.sh BIN "1.32 1.35" 'TestA|TestB' [go test args...]
set -uo pipefail
bin=$1 matrix=$2 matrix_tests=$3
shift 3
go=${GO:-go}
cd "$(dirname "$0")/.."
log=$bin/test-matrix.log
: >"$log"

(
  for v in $matrix; do
    echo "=== Kubernetes $v: $matrix_tests"
    KVMOUNT_KUBE_VERSION=$v KVMOUNT_BIN_DIR=$bin scripts/netns-run.sh "$go" test -count=1 -timeout 30m -v \
      -run "^($matrix_tests)\$" ./test/e2e ./internal/localcluster || exit 1
  done
) >"$log" 2>&1 &
matrix_pid=$!
echo "test-suites: the version matrix ($matrix) runs alongside; its log: $log"
start=$SECONDS

KVMOUNT_BIN_DIR=$bin scripts/netns-run.sh "$go" test -race -count=1 -timeout 60m -v "$@" ./...
main=$?
echo "test-suites: every test on Kubernetes 1.37: exit $main after $((SECONDS - start))s"

wait "$matrix_pid"
matrix_rc=$?
cat "$log"
echo "test-suites: the version matrix ($matrix): exit $matrix_rc after $((SECONDS - start))s"
[ "$main" -eq 0 ] && [ "$matrix_rc" -eq 0 ]
