# canarylab — see README.md. Every target works on a fresh machine after
# `make test-deps` (which installs, as root, what the tests need).

GO        ?= go
BIN       := bin/canarylab
PKGS      := ./...
VERSION   := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    := $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME  ?= 30s
# Debian packages the tests and benchmarks use (chromium: the HTML reports are
# checked in a real headless browser).
APT_DEPS  := prometheus wrk python3-locust chromium fonts-dejavu-core

.PHONY: all build demo schema test test-e2e test-unit test-deps bench lint fuzz mock clean help e2e e2e-tools

all: lint build test

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/canarylab
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/canarylab

demo: build ## run the success and failure-errors scenarios on the embedded engine, 30× real time (about 40 s)
	$(BIN) run --speed 30 success failure-errors

schema: ## write docs/scenario.schema.json, the published JSON Schema of scenarios
	$(GO) run ./cmd/canarylab schema > docs/scenario.schema.json

mock: build ## start the mock server with the broken-canary example (Ctrl-C stops it)
	$(BIN) mock --config mockserver/examples/broken-canary.yaml --version-label canary

test: ## unit and integration tests with the race detector, every ready scenario end to end, and the e2e tests against a real control plane and Flagger (run `make test-deps` once first, as root)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	$(MAKE) --no-print-directory test-e2e
	$(MAKE) --no-print-directory e2e

# The ready scenarios run time-scaled (30×) on the embedded engine, each
# also on the sim engine for the same verdict; TestCalibration runs a
# marginal scenario 90 to 180 times on the embedded engine (30×, three at a
# time) against the sim engine's P(promote). The race detector slows the
# data path too much for time-scaled runs, so these run without it
# (TestEngineUnderRace covers the engine's concurrency with -race above).
test-e2e: ## every ready scenario end to end on the embedded engine and the sim engine (same verdicts), and the sim's calibration against the embedded engine (about three minutes)
	$(GO) test -count=1 -timeout 10m -run 'TestReadyScenarios|TestCalibration' ./orchestrator/local/

# The e2e module (e2e/, its own go.mod) runs a real control plane and the
# real Flagger inside a private network namespace (needs root). Its tools are
# built once into ${XDG_CACHE_HOME:-~/.cache}/canarylab-e2e/<key>/ and
# reused while current; see e2e/tools.
e2e-tools: ## build the e2e control plane's binaries (kube-apiserver, controller-manager, scheduler, etcd, kwok, Flagger; about 10 min cold, nothing when current)
	cd e2e && $(GO) run ./cmd/e2e-tools

e2e: ## the e2e tests against a real Kubernetes control plane and the real Flagger (builds the tools first if needed)
	cd e2e && $(GO) test -count=1 -timeout 30m ./...

test-unit: ## unit tests only (no external peers)
	$(GO) test -race -count=1 -short $(PKGS)

test-deps: ## install what the tests need (apt-get as root; idempotent) and download the Go modules
	@missing=""; for p in $(APT_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "test-deps: need root to install:$$missing" >&2; exit 1; fi; \
		echo "test-deps: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "test-deps: Debian packages present ($(APT_DEPS))"; fi
	$(GO) mod download

bench: ## side-by-side benchmarks against bare net/http, fortio and go-httpbin, and the Go benchmarks (docs/benchmarks.md)
	bash bench/mockserver.sh

fuzz: ## run every fuzz target for FUZZTIME each (they also run as ordinary tests in `make test`)
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg; \
		done; done

lint: ## gofmt and go vet (the main module and e2e/)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	cd e2e && $(GO) vet ./...

.PHONY: manifests-vendor image

manifests-vendor: ## regenerate manifests/'s copies: Flagger's and Istio's manifests from the Go modules go.mod pins, the Locust plans and locustfiles
	$(GO) run ./manifests/cmd/manifests-vendor

# The image's architecture (the machine's by default); the binary is static
# and linux, whatever the host.
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)

image: ## build the container image without a container engine: bin/canarylab-image.tar (docker load -i) and bin/canarylab-image/ (an OCI layout)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/image/canarylab ./cmd/canarylab
	rm -rf bin/canarylab-image bin/canarylab-image.tar
	$(GO) run ./image/cmd/canarylab-image -binary bin/image/canarylab -version $(VERSION) -revision $(COMMIT) \
		-arch $(IMAGE_ARCH) -tar bin/canarylab-image.tar -layout bin/canarylab-image

clean:
	rm -rf bin
