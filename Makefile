# msgrouter: `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/msgrouter/msgrouter/internal/config.Version=$(VERSION)
BINARIES := ingest router cams routerctl msgrouter chaos
ARGS ?=

.PHONY: help build run test test-short lint bench chaos chaos-short fuzz clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

build: ## build every binary into bin/
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ $(addprefix ./cmd/,$(BINARIES))

run: ## run the whole system in one process (embedded NATS unless NATS_URL is set); ARGS=--follow prints deliveries
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/msgrouter $(ARGS)

test: ## run every test (needs Postgres; starts its own in-process NATS)
	$(GO) test -race -count=1 -timeout 20m ./...

lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

bench: build ## start the system as separate processes and measure each stage: drain, all, ingest (see BENCHMARKS.md)
	./scripts/bench.sh

gobench: ## Go micro-benchmarks of the hot functions
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

chaos: build ## fault-injection suite: real processes, kills, restarts, outages (~4 min; ARGS=--short ~2 min)
	./bin/chaos $(ARGS)

fuzz: ## run each fuzzer for FUZZTIME (default 30s)
	./scripts/fuzz.sh $${FUZZTIME:-30s}

clean: ## remove build output and local data
	rm -rf bin .data
