# kvmount: `make demo` runs the main job, `make test` runs every test.
# Steps that need the network (modules, builds, test compilation) run first;
# the tests themselves run in a loopback-only network namespace.

GO       ?= go
BIN      := $(CURDIR)/bin
PKGS     := ./...
TESTARGS ?=

.PHONY: all build vet cluster-bins cluster-bins-matrix tools images manifests test test-compile host-deps demo crds tidy clean clean-cache

all: build

## build: the kvmount command into bin/
build:
	$(GO) build -trimpath -o $(BIN)/ ./cmd/...

## vet: go vet over both modules
vet:
	$(GO) vet $(PKGS)
	cd tools/cluster && $(GO) vet ./...
	cd tools/images && $(GO) vet ./...
	cd tools/ci && $(GO) vet ./...

## cluster-bins: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
## kubelet, kube-proxy, kubectl, fakecri and nodeinit, linked into bin/ from
## a per-user cache outside the clone (built once per pinned version, reused
## by every clone: tools/cluster/build.sh); with KUBE_VERSIONS="1.33 …",
## those versions too
KUBE_VERSIONS ?=
cluster-bins:
	tools/cluster/build.sh $(BIN) $(KUBE_VERSIONS)

## cluster-bins-matrix: cluster-bins and the Kubernetes binaries of every
## version of MATRIX (make test)
cluster-bins-matrix:
	tools/cluster/build.sh $(BIN) $(MATRIX)

## clean-cache: remove the cached Kubernetes builds, helm and images (every clone's)
clean-cache:
	c="$${KVMOUNT_CACHE_DIR:-$${XDG_CACHE_HOME:-$$HOME/.cache}/kvmount}"; rm -rf "$$c/k8s" "$$c/helm" "$$c/images"

## images: kvmount's two images (linux/amd64 and linux/arm64, one OCI index
## each) and the local cluster's pause and busybox, as OCI archives in
## bin/images; prints the digests (the same on every build of a commit)
# IMAGES_STAMP is what the images are built from when the working tree is
# clean: the commit, Go, busybox and $$SOURCE_DATE_EPOCH. With changes in
# the tree it is empty, and the images are built into bin/images each time.
IMAGES_STAMP = $(shell [ -z "$$(git status --porcelain 2>/dev/null)" ] && git rev-parse -q --verify HEAD >/dev/null && \
  { git rev-parse HEAD; $(GO) version; sha256sum < /bin/busybox; echo "$$SOURCE_DATE_EPOCH"; } | sha256sum | cut -c1-16)
images:
	scripts/cached.sh images $(BIN)/images "$(IMAGES_STAMP)" -- \
	  sh -c 'cd tools/images && $(GO) run . --root $(CURDIR) --out "$$CACHED_OUT" >/dev/null'
	@cat $(BIN)/images/digests.txt

## host-deps: the host tools and packages the tests need (iproute2, util-linux,
## containerd, runc, CNI plugins, busybox-static, iptables)
host-deps:
	scripts/host-deps.sh

## test-compile: download every module (needs the network) and compile the
## tools' tests; the main module's tests are compiled when they run (a
## separate pass first linked every race test binary twice: 89 s)
test-compile:
	$(GO) mod download
	cd tools/cluster && $(GO) mod download
	cd tools/helm && $(GO) mod download
	cd tools/images && $(GO) mod download && $(GO) test -count=1 -run '^$$' ./... >/dev/null
	cd tools/ci && $(GO) mod download && $(GO) test -count=1 -run '^$$' ./... >/dev/null

## MATRIX: the other Kubernetes versions make test runs on (tools/cluster/k8s-*),
## with MATRIX_TESTS: the seed's flows, SecretSync, workload identity and identity binding
## end to end, manifest and chart validation, the chart's install, and
## containers on the local nodes
MATRIX       ?= 1.32 1.35
MATRIX_TESTS := TestSeedThreeMethods|TestSecretSync|TestWorkloadIdentity|TestIdentityBinding|TestDeployManifestsValidate|TestHelmChart|TestHelmLifecycle|TestContainerdNodes

## test: everything above, then every test, with the race detector, with
## loopback as the only network, on Kubernetes 1.37 (test/e2e in shards beside
## the other packages), and alongside (each in its own network namespace) the
## tools' tests and MATRIX_TESTS on each version of MATRIX (scripts/test-suites.sh)
test: host-deps build vet cluster-bins-matrix tools images test-compile
	GO=$(GO) scripts/test-suites.sh $(BIN) "$(MATRIX)" '$(MATRIX_TESTS)' $(TESTARGS)

## demo: the seed's three identity methods on a local node, in a loopback-only
## network namespace (everything it runs listens on 127.0.0.1 anyway)
demo: host-deps build cluster-bins tools images
	scripts/netns-run.sh $(BIN)/kvmount demo

## crds: regenerate deploy/crds/secrets-store.csi.x-k8s.io.yaml from the Go types
crds:
	$(GO) run ./internal/apis/secretsstore/gencrds deploy/crds/secrets-store.csi.x-k8s.io.yaml
	cp deploy/crds/secrets-store.csi.x-k8s.io.yaml deploy/crds/secret-sync.x-k8s.io.yaml deploy/helm/kvmount/files/

## manifests: both charts' values.schema.json, then deploy/*.yaml (plain
## manifests) rendered from the chart and the Azure layout's copy of it
manifests: tools
	python3 deploy/helm/values-schema.py deploy/helm/kvmount/values.schema.json deploy/helm/kvmount-azure/values.schema.json
	$(GO) run ./deploy/render --helm $(BIN)/helm --chart deploy/helm/kvmount --out deploy

## tools: helm into bin/, built from its Go module (for the chart's tests)
## (it reports the newest Kubernetes version kvmount tests, as helm's own
## release builds report theirs, so `helm template` needs no --kube-version)
HELM_KUBE_MINOR := 37
HELM_LDFLAGS := -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_KUBE_MINOR) -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_KUBE_MINOR)
# HELM_STAMP is what helm is built from: its module's pins, the flags, Go.
HELM_STAMP = $(shell { cat tools/helm/go.mod tools/helm/go.sum; echo '$(HELM_LDFLAGS)'; $(GO) version; } | sha256sum | cut -c1-16)
tools:
	CACHED_FILE=1 scripts/cached.sh helm $(BIN)/helm "$(HELM_STAMP)" -- \
	  sh -c 'cd tools/helm && $(GO) build -trimpath -o "$$CACHED_OUT/helm" -ldflags "$(HELM_LDFLAGS)" helm.sh/helm/v3/cmd/helm'

## tidy: go mod tidy (see DESIGN.md for why -e may be needed)
tidy:
	$(GO) mod tidy -e
	cd tools/cluster && $(GO) mod tidy
	cd tools/images && $(GO) mod tidy
	cd tools/ci && $(GO) mod tidy

clean:
	rm -rf $(BIN)
