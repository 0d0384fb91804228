# protomesh: every target installs what it needs. `make up` runs the mesh, `make test` checks everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS_DIR := $(CURDIR)/.tools
TOOLS_BIN := $(TOOLS_DIR)/bin
export PATH := $(TOOLS_BIN):$(CURDIR)/node_modules/.bin:$(PATH)

# Pinned versions of the Go tools the tests drive (go install from the Go module proxy).
GRPCURL_VERSION := v1.9.3
GRPC_HEALTH_PROBE_VERSION := v0.4.62

BUF := node_modules/.bin/buf
GEN_DIR := generated
DESCRIPTOR_SET := $(GEN_DIR)/descriptor.binpb

.PHONY: help deps tools postgresql chaos-tools gen check-gen build typecheck lint test test-unit up breaking clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# better-sqlite3 (the orders store) is built from source by its install script, approved in
# package.json "allowScripts": its prebuilt binaries come from GitHub, which may be out of reach.
# node-gyp compiles against the headers of the running node, which Debian's and nodejs.org's builds
# install under node's prefix (include/node); pointing npm at them spares node-gyp downloading them.
# An npm_config_nodedir already in the environment wins.
NODE_PREFIX := $(shell node -p 'path.resolve(process.execPath, "..", "..")' 2>/dev/null)
ifneq ($(wildcard $(NODE_PREFIX)/include/node/node.h),)
export npm_config_nodedir ?= $(NODE_PREFIX)
endif

node_modules/.installed: package.json package-lock.json
	@node -e 'const [major, minor] = process.versions.node.split(".").map(Number); if (major < 20 || (major === 20 && minor < 19)) { console.error(`protomesh needs Node.js 20.19 or later; this is $${process.version}`); process.exit(1); }'
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.installed ## install npm dependencies (npm ci, from package-lock.json)

# Under CI (CI=true or 1) a missing toolchain fails the run; elsewhere it is named and skipped.
IS_CI := $(filter true 1,$(CI))

# $(call go-install,module@version): a pinned Go tool into .tools/bin. Without Go, outside CI, it says
# so and goes on: `make up` runs without the tool, and the tests that drive it are skipped, saying why.
define go-install
	@if command -v go >/dev/null 2>&1; then \
	  echo "GOBIN=$(TOOLS_BIN) go install $(1)"; GOBIN=$(TOOLS_BIN) go install $(1); \
	elif [ -n "$(IS_CI)" ]; then \
	  echo "Go is required to install $(1) (CI=$(CI)); install Go from https://go.dev/dl" >&2; exit 1; \
	else \
	  echo "Go not found: $(notdir $@) is not installed (install Go from https://go.dev/dl); the tests that drive it are skipped" >&2; \
	fi
endef

$(TOOLS_BIN)/grpcurl:
	$(call go-install,github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION))

$(TOOLS_BIN)/grpc-health-probe:
	$(call go-install,github.com/grpc-ecosystem/grpc-health-probe@$(GRPC_HEALTH_PROBE_VERSION))

tools: $(TOOLS_BIN)/grpcurl $(TOOLS_BIN)/grpc-health-probe ## install grpcurl and grpc-health-probe into .tools/bin (needs Go)

# $(call apt-install,check,package,what needs it): Debian's `package` with apt-get when `check` (a shell
# test) fails; that needs root (as in CI). Without root, outside CI, it is named and the suites that
# need it are skipped, saying why; under CI a missing package fails the run.
define apt-install
	@if ! { $(1); } >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(2); \
	  elif [ -n "$(IS_CI)" ]; then \
	    echo "$(2) is required (CI=$(CI)) by $(3): apt-get install $(2), as root" >&2; exit 1; \
	  else \
	    echo "$(2) not found: install Debian's $(2) (as root: apt-get install $(2)); $(3) are skipped" >&2; \
	  fi; \
	fi
endef

# PostgreSQL for the orders store's suite, which starts a throwaway server (test/support/postgres.ts).
postgresql: ## install PostgreSQL (Debian's postgresql) for the orders store's tests
	$(call apt-install,ls /usr/lib/postgresql/*/bin/pg_ctl,postgresql,the PostgreSQL suites)

# The chaos suite (test/chaos) puts a replica in a network namespace and breaks its link with `ip`
# and `tc` (iproute2), as root.
chaos-tools: ## install iproute2 (ip, tc) for the chaos suite's network namespaces, when missing
	$(call apt-install,command -v ip && command -v tc,iproute2,the chaos suite's network scenarios)

gen: deps ## generate TypeScript stubs and the descriptor set from proto/
	$(BUF) lint
	$(BUF) generate
	$(BUF) build --exclude-source-info --as-file-descriptor-set -o $(DESCRIPTOR_SET)

check-gen: deps ## fail if `make gen` would change generated/
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(BUF) generate --output "$$tmp" && \
	  $(BUF) build --exclude-source-info --as-file-descriptor-set -o "$$tmp/$(DESCRIPTOR_SET)" && \
	  if ! diff -r "$$tmp/$(GEN_DIR)" $(GEN_DIR) >/dev/null; then \
	    diff -r "$$tmp/$(GEN_DIR)" $(GEN_DIR) | head -40; \
	    echo "generated/ is out of date with proto/: run \`make gen\` and commit the result" >&2; exit 1; \
	  fi && echo "generated/ is up to date"

build: deps ## compile TypeScript into dist/
	tsc -p tsconfig.json

typecheck: deps ## type-check without emitting
	tsc -p tsconfig.json --noEmit

lint: deps ## buf lint, eslint, and the layering rules with no import cycles (dependency-cruiser)
	$(BUF) lint
	eslint --max-warnings 0 .
	depcruise --config .dependency-cruiser.cjs --output-type err $(wildcard mesh cli services generated test bench)

test-unit: build tools bench-tools postgresql chaos-tools ## run the mocha suite only
	mocha 'dist/test/**/*.test.js'

test: deps tools bench-tools postgresql chaos-tools check-gen typecheck lint build ## type-check, lint, drift check and the mocha suite
	mocha 'dist/test/**/*.test.js'

up: deps tools build ## run the control plane and the replicas of deploy/mesh.yaml (Ctrl-C stops them)
	node dist/cli/protomesh.js up

.PHONY: control-plane
control-plane: deps build ## run the control plane alone on 127.0.0.1:50050 with deploy/mesh.yaml (Ctrl-C stops it)
	node dist/cli/protomesh.js control-plane deploy/mesh.yaml

breaking: deps ## compare proto/ against main for breaking changes
	$(BUF) breaking proto --against '.git#branch=main,subdir=proto'

clean: ## remove build output and installed tools
	rm -rf dist .tools node_modules

# Benchmarks (not tests): bench/bench.mk defines `make bench`, `make bench-smoke` and their tools.
include bench/bench.mk
