# cdc-pipeline — developer entry points. `make help` lists them.
#
# Two commands set everything up on a fresh machine:
#   make demo   install + start the local stack, then the whole pipeline with a short load (make down stops it)
#   make test   lint + every test, against the real local stack (started if needed)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
STACK := dev/stack.sh
# Where the stack keeps its state and its env file (dev/lib.sh honours the same variable).
STACK_DIR := $(or $(CDC_STACK_DIR),.stack)
# Integration tests share one stack; run test binaries' cases with modest parallelism on a 2-core box.
TEST_THREADS ?= 4

.PHONY: help stack-up stack-down stack-status stack-reset build lint fmt clippy test test-unit \
        test-integration test-clickhouse-front test-dashboard test-deploy tools docs-config bench-startup demo down fuzz-smoke bench-masker bench-capture bench-sinks clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-24s %s\n", $$1, $$2}'

stack-up: ## install (cached) and start Kafka, Cassandra, PostgreSQL, TimescaleDB, ClickHouse, schema registry
	@bash $(STACK) up

stack-down: ## stop the local stack (data kept under .stack/)
	@bash $(STACK) down

stack-status: ## versions and health of each stack component; non-zero exit if any is down
	@bash $(STACK) status

stack-reset: ## stop the stack and delete its data (.stack/); cached downloads are kept
	@bash $(STACK) reset

build: ## build every crate and service
	$(CARGO) build --workspace --all-targets

fmt: ## format the code
	$(CARGO) fmt --all

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-unit: ## unit, property and golden tests (no servers needed)
	$(CARGO) test --workspace --lib --bins

test-clickhouse-front: ## tests of the ClickHouse HTTP front (dev/clickhouse-http)
	bash dev/clickhouse-http/run-tests.sh

# The end-to-end tests (tests/e2e_*.rs) start the service binaries as processes: build them first.
test-integration: stack-up ## integration tests against the running local stack (builds the service binaries first)
	$(CARGO) build --workspace --bins
	set -a; source $(STACK_DIR)/env; set +a; \
	$(CARGO) test --workspace --test '*' -- --test-threads=$(TEST_THREADS)

# The whole pipeline (capture, masker, three sinks, cdcctl load) runs as processes in the test, so the
# binaries are built first. Chromium comes
# from dev/apt-packages.txt (installed by stack-up).
test-dashboard: stack-up ## browser test of `cdcctl dashboard` in headless Chromium (screenshot: target/dashboard.png)
	set -a; source $(STACK_DIR)/env; set +a; \
	$(CARGO) build --workspace --bins && \
	$(CARGO) test -p cdcctl --test dashboard -- --nocapture

tools: ## install (cached machine-wide) helm, promtool, k8s-validate and the Vault dev server the tests use
	bash dev/tools/helm.sh install
	bash dev/tools/promtool.sh install
	bash dev/tools/k8s-validate.sh install
	bash dev/components/vault.sh install

test-deploy: tools ## Dockerfile, docker-compose, Prometheus, Grafana dashboard, alert rules and Helm chart checks
	$(CARGO) test -p cdc-tests --test deploy

docs-config: ## regenerate docs/configuration.md from config/pipeline.example.yaml
	CDC_UPDATE_DOCS=1 $(CARGO) test -p cdc-config --test docs

bench-startup: stack-up ## cold start of each service to ready and of the pipeline to data in 3 warehouses; writes docs/benchmarks.md
	set -a; source $(STACK_DIR)/env; set +a; \
	$(CARGO) build --workspace --bins && \
	CDC_WRITE_BENCHMARKS=1 $(CARGO) test -p cdc-tests --test startup -- --nocapture

# test-integration runs every test target, the dashboard's browser test among them.
test: lint stack-up ## everything CI runs: lint, unit, integration and harness tests
	$(MAKE) --no-print-directory test-deploy
	$(MAKE) --no-print-directory test-unit
	$(MAKE) --no-print-directory test-clickhouse-front
	$(MAKE) --no-print-directory test-integration
	$(MAKE) --no-print-directory chaos
	$(MAKE) --no-print-directory soak DURATION=10m

demo: ## the whole pipeline on the local stack: stack, build, capture, masker, 3 sinks, a short load, status
	@bash dev/demo.sh

down: ## stop everything make demo started: the pipeline, then the stack (data kept)
	@bash dev/pipeline.sh down
	@bash $(STACK) down

.PHONY: pipeline-up pipeline-down pipeline-status

pipeline-up: stack-up ## build and start the demo pipeline (config/pipeline.demo.yaml; needs make demo's secrets)
	@bash dev/pipeline.sh up

pipeline-down: ## stop the demo pipeline's five services (SIGTERM, SIGKILL after the drain)
	@bash dev/pipeline.sh down

pipeline-status: ## the demo pipeline's processes and /readyz; non-zero exit if any is not ready
	@bash dev/pipeline.sh status

FUZZ_SECONDS ?= 60

fuzz-smoke: ## bounded fuzzing of the commit-log decoder (FUZZ_SECONDS per target)
	bash fuzz/smoke.sh $(FUZZ_SECONDS)

bench-masker: ## masking throughput per core (HMAC only, and with tokenization)
	$(CARGO) run --release -p cdc-mask --example bench_masker

bench-capture: stack-up ## capture: parse MB/s of a real segment, backlog events/s, write->raw-topic latency; writes docs/benchmarks.md
	set -a; source $(STACK_DIR)/env; set +a; \
	$(CARGO) test --release -p capture --bench bench_capture -- --ignored --nocapture --test-threads=1

clean: ## remove build outputs (keeps .stack/ and the download cache)
	$(CARGO) clean

bench-sinks: stack-up ## sinks: rows/s into PostgreSQL, TimescaleDB, ClickHouse (insert-only/mixed, batch 100/1k/10k); writes docs/benchmarks.md
	set -a; source $(STACK_DIR)/env; set +a; \
	$(CARGO) test --release -p cdc-sink --test bench_sinks -- --ignored --nocapture --test-threads=1

# ---- Benchmarks (issue 12). Never part of `make test`; numbers are reported, not asserted. ----
# The end-to-end benches start the release binaries as processes (cdc_testkit::pipeline).
BENCH_E2E_SECONDS ?= 300
BENCH_RELEASE_BINS := -p capture -p masker -p sink-postgres -p sink-clickhouse -p sink-timescaledb -p cdcctl
# Targets `make bench` runs, in order; a failing one is reported at the end, the others still run.
BENCH_TARGETS ?= bench-masker bench-capture bench-sinks bench-startup bench-e2e bench-h2h bench-scaling

.PHONY: bench bench-build bench-e2e bench-h2h bench-scaling

bench-build: ## release build of the services and cdcctl (the end-to-end benches run them as processes)
	$(CARGO) build --release $(BENCH_RELEASE_BINS)

bench-e2e: stack-up bench-build ## end to end under cdcctl load at 1,000 events/s for BENCH_E2E_SECONDS (300): latency per destination, CPU/RSS per service, max sustained rate; writes docs/benchmarks.md
	set -a; source $(STACK_DIR)/env; set +a; \
	CDC_WRITE_BENCHMARKS=1 BENCH_E2E_SECONDS=$(BENCH_E2E_SECONDS) \
	$(CARGO) test --release -p cdc-tests --test bench_e2e -- --ignored --nocapture --test-threads=1

bench-h2h: stack-up bench-build ## head-to-head with Debezium's Cassandra 5 connector (standalone, Maven Central): events/s, CPU, RSS, write->Kafka latency; writes docs/benchmarks.md
	set -a; source $(STACK_DIR)/env; set +a; \
	CDC_WRITE_BENCHMARKS=1 $(CARGO) test --release -p cdc-tests --test bench_h2h -- --ignored --nocapture --test-threads=1

bench-scaling: stack-up bench-build ## masker and PostgreSQL sink throughput with 1-16 partitions (direct and latency-bound); writes docs/benchmarks.md
	set -a; source $(STACK_DIR)/env; set +a; \
	CDC_WRITE_BENCHMARKS=1 $(CARGO) test --release -p cdc-tests --test bench_scaling -- --ignored --nocapture --test-threads=1

bench: stack-up ## every benchmark (masker, capture, sinks, start-up, e2e, Debezium head-to-head, scaling); writes docs/benchmarks.md and prints its tables
	@failed=(); mkdir -p target/bench; \
	for t in $(BENCH_TARGETS); do \
	    echo "==> make $$t (log: target/bench/$$t.log)"; \
	    $(MAKE) --no-print-directory $$t 2>&1 | tee target/bench/$$t.log; \
	    (( $${PIPESTATUS[0]} == 0 )) || failed+=("$$t"); \
	done; \
	bash dev/bench/summary.sh docs/benchmarks.md target/bench/bench-masker.log; \
	if (( $${#failed[@]} )); then echo "make bench: failed: $${failed[*]}" >&2; exit 1; fi

# Chaos suite (tests/chaos.rs): the scenarios restart shared servers (Kafka) and cut networks, so they
# are #[ignore]d in the integration run and run here alone, one at a time, after it. Results:
# target/chaos/*.json, rendered into docs/reliability.md.
.PHONY: chaos chaos-long

chaos: stack-up ## fault injection under load, bounded (partitions, ClickHouse 1 min down, TimescaleDB refusals→DLQ, Cassandra/Kafka restarts, kill -9 ×10 rounds, 100k burst); part of make test; writes docs/reliability.md
	$(CARGO) build --workspace --bins
	set -a; source $(STACK_DIR)/env; set +a; \
	CDC_WRITE_RELIABILITY=1 $(CARGO) test -p cdc-tests --test chaos -- --ignored --test-threads=1 --skip long_

# Soak (tests/soak.rs, SC-010/SC-013): steady load for DURATION, RSS and CPU of every service each
# SOAK_SAMPLE_SECS (60), fails on a clear upward memory trend; `make test` runs 10 minutes.
DURATION ?= 10m
SOAK_RATE ?= 300
.PHONY: soak
soak: stack-up ## steady load for DURATION (10m; 24h for SC-010) at SOAK_RATE ev/s, RSS/CPU per service every minute, slope check; writes docs/soak.md
	$(CARGO) build --workspace --bins
	set -a; source $(STACK_DIR)/env; set +a; \
	CDC_WRITE_SOAK=1 SOAK_DURATION=$(DURATION) SOAK_RATE=$(SOAK_RATE) \
	$(CARGO) test -p cdc-tests --test soak -- --ignored --nocapture --test-threads=1

chaos-long: stack-up ## every chaos scenario plus the full-length ones (ClickHouse down 2 min instead of 1); local runs
	$(CARGO) build --workspace --bins
	set -a; source $(STACK_DIR)/env; set +a; \
	CDC_WRITE_RELIABILITY=1 $(CARGO) test -p cdc-tests --test chaos -- --ignored --test-threads=1
