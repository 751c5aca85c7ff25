# msgrouter: `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/msgrouter/msgrouter/internal/config.Version=$(VERSION)
BINARIES := ingest router cams routerctl msgrouter chaos
ARGS ?=

.PHONY: help build run test test-short test-browser lint bench chaos chaos-short chaos-cluster nats-server deploy-check helm fuzz clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

build: ## build every binary into bin/
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ $(addprefix ./cmd/,$(BINARIES))

run: ## run the whole system in one process (embedded NATS unless NATS_URL is set); ARGS=--follow prints deliveries
	@# Built, then run (not `go run`): Ctrl-C reaches msgrouter alone, which stops
	@# cleanly and exits 0, and make reports no error.
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/msgrouter ./cmd/msgrouter
	./bin/msgrouter $(ARGS)

test: ## run every test (needs Postgres; starts its own in-process NATS)
	$(GO) test -race -count=1 -timeout 20m ./...

test-browser: ## operator console tests in headless Chromium (needs node/npm and /usr/bin/chromium, Postgres); screenshots into a temp dir, into docs/console/ with UPDATE_SCREENSHOTS=1
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/msgrouter
	cd test/browser && npm ci --no-audit --no-fund --loglevel=error
	node test/browser/run.mjs

lint: ## gofmt, go vet, no nats-server in production binaries, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if $(GO) list -deps ./cmd/ingest ./cmd/router ./cmd/cams ./cmd/routerctl | grep -q nats-server; then echo "lint: a production binary links nats-server (issue 10; go list -deps ./cmd/ingest ./cmd/router ./cmd/cams ./cmd/routerctl)"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

bench: build ## start the system as separate processes and measure each stage: drain, all, ingest (see BENCHMARKS.md)
	./scripts/bench.sh

gobench: ## Go micro-benchmarks of the hot functions
	$(GO) test -run '^$$' -bench . -benchmem ./internal/... ./cmd/routerctl/...

chaos: build ## fault-injection suite: real processes, kills, restarts, outages (~4 min; ARGS=--short ~2 min)
	./bin/chaos $(ARGS)

nats-server: ## build bin/nats-server from the nats-server/v2 module in go.mod (the cluster chaos run needs a current server)
	$(GO) build -o bin/nats-server github.com/nats-io/nats-server/v2

chaos-cluster: build nats-server ## fault injection on a 3-node NATS cluster with R3 streams (~3 min; ARGS=--short ~1 min; add --postgres-restart none on a shared Postgres)
	./bin/chaos --cluster --nats-server bin/nats-server $(ARGS)

deploy-check: ## Helm chart (lint, render, strict decode into Kubernetes types) and docker-compose.yml (compose-go loader); own module in deploy/test
	cd deploy/test && $(GO) test -count=1 ./...

HELM ?= $(GO) run helm.sh/helm/v3/cmd/helm@v3.22.0
helm: ## helm lint + helm template of deploy/helm/msgrouter with the helm CLI (pinned; the first go run builds it: minutes)
	$(HELM) lint deploy/helm/msgrouter
	$(HELM) template msgrouter deploy/helm/msgrouter > /dev/null
	$(HELM) template msgrouter deploy/helm/msgrouter -f deploy/helm/msgrouter/values-postgres-ha.yaml --set router.autoscaling.keda.enabled=false > /dev/null

fuzz: ## run each fuzzer for FUZZTIME (default 30s)
	./scripts/fuzz.sh $${FUZZTIME:-30s}

clean: ## remove build output and local data
	rm -rf bin .data
