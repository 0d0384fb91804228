# The Go kit (mesh/go), the Go services and programs (services/inventory, test/interop/go).
# Included by the Makefile, which defines TOOLS_BIN and IS_CI. Packages are named, never `./...`:
# node_modules holds stray .go files.
GO ?= go
GO_DIST := dist/go
GO_PACKAGES := ./mesh/go/protomesh/... ./services/inventory/... ./test/interop/go/...
GO_TEST_TIMEOUT ?= 120s

# $(call go-or-skip,what): run the rest of the recipe line only when Go is there; without it,
# outside CI, say what to install and skip; under CI, fail.
define go-or-skip
if ! command -v $(GO) >/dev/null 2>&1; then \
  if [ -n "$(IS_CI)" ]; then echo "Go is required to $(1) (CI=$(CI)); install Go 1.26 or later from https://go.dev/dl" >&2; exit 1; fi; \
  echo "Go not found: skipping $(1) (install Go 1.26 or later from https://go.dev/dl)" >&2; exit 0; \
fi
endef

.PHONY: go-build go-test go-lint

go-build: ## build the Go inventory service and interop program into dist/go
	@$(call go-or-skip,build the Go inventory service and interop program); \
	set -e; mkdir -p $(GO_DIST); \
	echo "$(GO) build -o $(GO_DIST)/inventory ./services/inventory"; $(GO) build -o $(GO_DIST)/inventory ./services/inventory; \
	echo "$(GO) build -o $(GO_DIST)/interop ./test/interop/go"; $(GO) build -o $(GO_DIST)/interop ./test/interop/go

# The tests start the TypeScript control plane (node dist/cli/protomesh.js) and grpcurl from TOOLS_BIN.
go-test: ## run the Go kit's, inventory's and interop program's tests
	@$(call go-or-skip,run the Go tests); \
	echo "$(GO) test -count=1 -timeout $(GO_TEST_TIMEOUT) $(GO_PACKAGES)"; \
	PATH="$(TOOLS_BIN):$$PATH" $(GO) test -count=1 -timeout $(GO_TEST_TIMEOUT) $(GO_PACKAGES)

# gofmt (no file may need formatting) and go vet over the Go packages; part of `make lint`.
go-lint: ## gofmt and go vet over the Go packages
	@$(call go-or-skip,lint the Go packages); \
	set -e; unformatted=$$(gofmt -l mesh/go services/inventory test/interop/go); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted (run gofmt -w)" >&2; exit 1; fi; \
	echo "$(GO) vet $(GO_PACKAGES)"; $(GO) vet $(GO_PACKAGES)
