# macro: build, run and test. `make help` lists the targets.
#
# Everything the targets need from Debian is installed by scripts/setup.sh,
# which `run` and `test` call first (it is quiet and quick when nothing is
# missing).

SHELL       := /bin/bash
GO          ?= go
DATA_DIR    ?= /var/lib/macro
# End-to-end tests start real servers, which share the host's cgroups,
# nftables and network namespaces, and both cores of a 2-core machine: test
# packages run one at a time. Raise it (make test TEST_P=2) to trade that for
# wall time.
TEST_P      ?= 1
TEST_FLAGS  ?= -race -count=1 -timeout 25m -p $(TEST_P)
FUZZTIME    ?= 10s
PKGS        ?= ./...

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this list of targets
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Variables: DATA_DIR=$(DATA_DIR) TEST_P=$(TEST_P) FUZZTIME=$(FUZZTIME) PKGS=$(PKGS)"

.PHONY: setup
setup: ## Install the Debian packages macro and its tests need (idempotent)
	@scripts/setup.sh

.PHONY: build
build: ## Build bin/macro (and bin/kra once cmd/kra has a main package)
	$(GO) build -o bin/macro ./cmd/macro
	@if ls cmd/kra/*.go >/dev/null 2>&1; then echo $(GO) build -o bin/kra ./cmd/kra; $(GO) build -o bin/kra ./cmd/kra; fi

.PHONY: run
run: setup build ## Start the cloud on this machine (macro server --data-dir DATA_DIR)
	exec bin/macro server --data-dir $(DATA_DIR)

.PHONY: vet
vet: ## go vet every package
	$(GO) vet $(PKGS)

.PHONY: test
test: setup ## Vet, then run all tests with the race detector (end-to-end tests need root)
	$(GO) vet $(PKGS)
	$(GO) test $(TEST_FLAGS) $(PKGS)

.PHONY: bench
bench: setup ## Run bench/run.sh if present, else the Go benchmarks
	@if [ -x bench/run.sh ]; then bench/run.sh; \
	else $(GO) test -run '^$$' -bench . -benchmem $(PKGS); fi

.PHONY: fuzz
fuzz: ## Fuzz every Fuzz target for FUZZTIME each (default 10s)
	@scripts/fuzz.sh $(FUZZTIME)

.PHONY: images
images: setup ## Build the slow test images (redis:test) into the test cache
	scripts/build-redis-image.sh

.PHONY: clean
clean: ## Remove build output (the test image cache stays: MACRO_TEST_CACHE)
	rm -rf bin
