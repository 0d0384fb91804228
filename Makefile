# protomesh: every target installs what it needs. `make up` runs the mesh, `make test` checks everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS_DIR := $(CURDIR)/.tools
TOOLS_BIN := $(TOOLS_DIR)/bin
export PATH := $(TOOLS_BIN):$(CURDIR)/node_modules/.bin:$(PATH)

# Pinned versions of the Go tools the tests drive (go install from the Go module proxy).
GRPCURL_VERSION := v1.9.3
JAEGER_VERSION := v1.76.0
GRPC_HEALTH_PROBE_VERSION := v0.4.62
# Pinned Go code generators for `make gen` (generated/go).
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
# protoc-gen-openapiv2 (grpc-gateway) writes generated/openapi from the google.api.http rules.
PROTOC_GEN_OPENAPIV2_VERSION := v2.33.0

BUF := node_modules/.bin/buf
GEN_DIR := generated
DESCRIPTOR_SET := $(GEN_DIR)/descriptor.binpb

.PHONY: help deps tools jaeger jaeger-up go-gen-tools python-env postgresql chaos-tools chromium promtool gen check-gen build typecheck lint test test-unit up breaking clean

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

# Jaeger (v2, all in one) for the traces: the cross-language trace test reads a PlaceOrder back from
# its query API, and `make jaeger-up` runs it for `make up`. Its module cannot be `go install`ed at a
# version (its go.mod has replace directives), so it is a tool of a module of its own under .tools.
JAEGER_TOOL_DIR := .tools/jaeger
$(TOOLS_BIN)/jaeger:
	@if command -v go >/dev/null 2>&1; then \
	  set -e; mkdir -p $(JAEGER_TOOL_DIR); \
	  printf 'module protomesh.local/tools/jaeger\n\ngo 1.26\n' > $(JAEGER_TOOL_DIR)/go.mod; \
	  echo "go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@$(JAEGER_VERSION) && go build -o $@ (in $(JAEGER_TOOL_DIR); a few minutes the first time)"; \
	  cd $(JAEGER_TOOL_DIR) && go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@$(JAEGER_VERSION) && go build -o $(abspath $@) github.com/jaegertracing/jaeger/cmd/jaeger; \
	elif [ -n "$(IS_CI)" ]; then \
	  echo "Go is required to build Jaeger (CI=$(CI)); install Go from https://go.dev/dl" >&2; exit 1; \
	else \
	  echo "Go not found: jaeger is not installed (install Go from https://go.dev/dl); the trace test that reads Jaeger is skipped" >&2; \
	fi

jaeger: $(TOOLS_BIN)/jaeger ## build the pinned Jaeger (all in one) into .tools/bin (needs Go)

jaeger-up: jaeger ## run Jaeger for `make up`'s traces: OTLP/HTTP on 127.0.0.1:4318, the query API on 127.0.0.1:16686
	$(TOOLS_BIN)/jaeger --config deploy/jaeger.yaml

$(TOOLS_BIN)/protoc-gen-go:
	$(call go-install,google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION))

$(TOOLS_BIN)/protoc-gen-go-grpc:
	$(call go-install,google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION))

$(TOOLS_BIN)/protoc-gen-openapiv2:
	$(call go-install,github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(PROTOC_GEN_OPENAPIV2_VERSION))

go-gen-tools: $(TOOLS_BIN)/protoc-gen-go $(TOOLS_BIN)/protoc-gen-go-grpc $(TOOLS_BIN)/protoc-gen-openapiv2 ## install the pinned Go and OpenAPI code generators into .tools/bin

# The Go and Python kits: their toolchains, builds and test suites.
include mesh/go/go.mk
include mesh/python/python.mk

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

# promtool (Debian's prometheus package) checks the admin port's exposition in the metrics suite.
promtool: ## install Debian's prometheus package for promtool, when missing
	$(call apt-install,test -x /usr/bin/promtool,prometheus,the metrics exposition checks)

# The gateway's browser test drives Debian's chromium headless (playwright-core, no download).
chromium: ## install Debian's chromium for the gateway's browser test, when missing
	$(call apt-install,test -x /usr/bin/chromium,chromium,the browser tests)

# The chaos suite (test/chaos) puts a replica in a network namespace and breaks its link with `ip`
# and `tc` (iproute2), as root.
chaos-tools: ## install iproute2 (ip, tc) for the chaos suite's network namespaces, when missing
	$(call apt-install,command -v ip && command -v tc,iproute2,the chaos suite's network scenarios)

# What the TypeScript stubs and the descriptor set are made of: protomesh's contracts, and of the
# upstream modules in buf.yaml the files the kit uses (health, ORCA and validate, and google.api's
# HTTP rules; not the rest of googleapis).
GOOGLEAPIS := node_modules/@grpc/grpc-js-xds/deps/googleapis
PROTO_PATHS := $(addprefix --path ,$(wildcard proto/*))
GEN_PATHS := $(PROTO_PATHS) $(addprefix --path ,node_modules/grpc-health-check/proto/health \
  node_modules/@grpc/grpc-js/proto/xds/xds node_modules/@grpc/grpc-js/proto/protoc-gen-validate/validate \
  $(GOOGLEAPIS)/google/api/annotations.proto $(GOOGLEAPIS)/google/api/http.proto)

# $(call generate,root): every language's stubs, the OpenAPI document and the descriptor set under
# root (generated/ when root is .). A toolchain that is missing is named and left out (under CI: fails).
define generate
	$(BUF) generate --output $(1) $(GEN_PATHS)
	@if [ -x $(TOOLS_BIN)/protoc-gen-go ] && [ -x $(TOOLS_BIN)/protoc-gen-go-grpc ]; then \
	  $(BUF) generate --template buf.gen.go.yaml $(PROTO_PATHS) --output $(1); \
	elif [ -n "$(IS_CI)" ]; then echo "Go is required to generate generated/go (CI=$(CI))" >&2; exit 1; \
	else echo "Go code generators missing (install Go): generated/go left as it is" >&2; fi
	@if [ -x $(TOOLS_BIN)/protoc-gen-openapiv2 ]; then \
	  $(BUF) generate --template buf.gen.openapi.yaml --path proto/shop --output $(1); \
	elif [ -n "$(IS_CI)" ]; then echo "Go is required to generate generated/openapi (CI=$(CI))" >&2; exit 1; \
	else echo "protoc-gen-openapiv2 missing (install Go): generated/openapi left as it is" >&2; fi
	@if [ -x $(VENV_PYTHON) ]; then \
	  rm -rf $(1)/$(GEN_DIR)/python && mkdir -p $(1)/$(GEN_DIR)/python && \
	  wkt=$$($(VENV_PYTHON) -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))') && \
	  (cd proto && find . -name '*.proto' | sed 's|^\./||' | sort) | \
	  xargs $(VENV_PYTHON) -m grpc_tools.protoc -I proto -I $(GOOGLEAPIS) -I "$$wkt" \
	    --python_out=$(1)/$(GEN_DIR)/python --pyi_out=$(1)/$(GEN_DIR)/python --grpc_python_out=$(1)/$(GEN_DIR)/python; \
	elif [ -n "$(IS_CI)" ]; then echo "Python is required to generate generated/python (CI=$(CI))" >&2; exit 1; \
	else echo "Python virtualenv missing (install python3): generated/python left as it is" >&2; fi
	$(BUF) build --exclude-source-info --as-file-descriptor-set -o $(1)/$(DESCRIPTOR_SET) $(GEN_PATHS)
endef

gen: deps go-gen-tools python-env ## generate TypeScript, Go and Python stubs and the descriptor set from proto/
	$(BUF) lint
	$(call generate,.)

check-gen: deps go-gen-tools python-env ## fail if `make gen` would change generated/ (every language)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(MAKE) --no-print-directory gen-into GEN_ROOT="$$tmp" >/dev/null && \
	  for lang in ts go python openapi; do \
	    [ -d "$$tmp/$(GEN_DIR)/$$lang" ] || continue; \
	    if ! diff -r -x __pycache__ "$$tmp/$(GEN_DIR)/$$lang" $(GEN_DIR)/$$lang >/dev/null; then \
	      diff -r -x __pycache__ "$$tmp/$(GEN_DIR)/$$lang" $(GEN_DIR)/$$lang | head -40; \
	      echo "generated/$$lang is out of date with proto/: run \`make gen\` and commit the result" >&2; exit 1; \
	    fi; \
	  done && \
	  cmp -s "$$tmp/$(DESCRIPTOR_SET)" $(DESCRIPTOR_SET) || { echo "$(DESCRIPTOR_SET) is out of date with proto/: run \`make gen\`" >&2; exit 1; } && \
	  echo "generated/ is up to date"

.PHONY: gen-into
gen-into:
	$(call generate,$(GEN_ROOT))

build: deps ## compile TypeScript into dist/
	tsc -p tsconfig.json

typecheck: deps ## type-check without emitting
	tsc -p tsconfig.json --noEmit

lint: deps go-lint ## buf lint, eslint, the layering rules with no import cycles (dependency-cruiser), gofmt and go vet
	$(BUF) lint
	eslint --max-warnings 0 .
	depcruise --config .dependency-cruiser.cjs --output-type err $(wildcard mesh cli services generated test bench)

test-unit: build tools jaeger bench-tools postgresql chaos-tools chromium promtool go-build python-env ## run the mocha suite only
	mocha 'dist/test/**/*.test.js'

test: deps tools jaeger bench-tools postgresql chaos-tools chromium promtool check-gen typecheck lint build go-build python-env go-test python-test ## type-check, lint, drift check, the Go and Python suites and the mocha suite
	mocha 'dist/test/**/*.test.js'

up: deps tools build go-build python-env ## run the control plane and the replicas of deploy/mesh.yaml, in TypeScript, Go and Python (Ctrl-C stops them)
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
