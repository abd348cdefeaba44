#!/usr/bin/env bash
# make test's suites, all started at once, each in its own loopback-only
# network namespace:
#   - every package but test/e2e, with the race detector, on Kubernetes
#     1.37 (in the foreground, its output streamed);
#   - test/e2e, with the race detector, on 1.37, its tests dealt into
#     E2E_SHARDS shards (default 2) that run side by side, from one test
#     binary;
#   - tools/images' and tools/ci's tests, then MATRIX_TESTS on each version
#     of MATRIX in turn.
# The background suites' output goes to BIN/test-<suite>.log and is printed
# once all are done. Exits non-zero when any fails.
#
# Why this shape, measured on 2 cores: a cluster start waits far more than
# it computes once Stop removes its containers' cgroups (before that,
# every kubelet's cAdvisor walked thousands of them). The end-to-end tests,
# 23 cluster starts one after another, were the whole critical path:
# test/e2e started only once go test's two slots had worked through the
# other packages, and the whole run used about one core of two.
#
#   test-suites.sh BIN "1.32 1.35" 'TestA|TestB' [go test args...]
#
# The go test args (make's TESTARGS) apply to the packages but test/e2e.
set -uo pipefail
bin=$(realpath -m "$1") matrix=$2 matrix_tests=$3
shift 3
go=${GO:-go}
shards=${E2E_SHARDS:-2}
cd "$(dirname "$0")/.."
start=$SECONDS
names=() pids=()

# background runs a suite in its own network namespace, its output in
# BIN/test-NAME.log.
background() {
  local name=$1
  shift
  KVMOUNT_BIN_DIR=$bin scripts/netns-run.sh "$@" >"$bin/test-$name.log" 2>&1 &
  names+=("$name") pids+=($!)
  echo "test-suites: $name runs alongside; its log: $bin/test-$name.log"
}

matrix_suite() {
  (cd tools/images && "$go" test -count=1 -timeout 10m -v ./...) || return 1
  (cd tools/ci && "$go" test -count=1 -v ./...) || return 1
  for v in $matrix; do
    echo "=== Kubernetes $v: $matrix_tests"
    KVMOUNT_KUBE_VERSION=$v "$go" test -count=1 -timeout 30m -v \
      -run "^($matrix_tests)\$" ./test/e2e ./internal/localcluster || return 1
  done
}
export -f matrix_suite
export go matrix matrix_tests

# test/e2e is built once; each shard runs it on every SHARDS-th test of its
# list (new tests are dealt in without a list to keep).
"$go" test -race -c -o "$bin/e2e.test" ./test/e2e || exit 1
mapfile -t tests < <(cd test/e2e && "$bin/e2e.test" -test.list '.*' | grep -E '^(Test|Fuzz|Example)')
if [ ${#tests[@]} -eq 0 ]; then # a listing that failed must not pass as "no tests"
  echo "test-suites: test/e2e lists no tests" >&2
  exit 1
fi
for ((s = 0; s < shards; s++)); do
  sel=()
  for ((i = s; i < ${#tests[@]}; i += shards)); do sel+=("${tests[i]}"); done
  [ ${#sel[@]} -gt 0 ] || continue
  run="^($(IFS='|'; echo "${sel[*]}"))\$"
  background "e2e-$s" bash -c 'cd test/e2e && exec "$1" -test.count=1 -test.timeout=30m -test.v -test.run "$2"' e2e "$bin/e2e.test" "$run"
done
background matrix bash -c matrix_suite

KVMOUNT_BIN_DIR=$bin scripts/netns-run.sh "$go" test -race -count=1 -timeout 60m -v "$@" $("$go" list ./... | grep -v '/test/e2e$')
main=$?
echo "test-suites: every package but test/e2e on Kubernetes 1.37: exit $main after $((SECONDS - start))s"

failed=0
for i in "${!pids[@]}"; do
  wait "${pids[i]}"
  rc=$?
  cat "$bin/test-${names[i]}.log"
  echo "test-suites: ${names[i]}: exit $rc after $((SECONDS - start))s"
  [ "$rc" -eq 0 ] || failed=1
done
[ "$main" -eq 0 ] && [ "$failed" -eq 0 ]
