# cdc-pipeline — developer entry points. `make help` lists them.
#
# Two commands set everything up on a fresh machine:
#   make demo   install + start the local stack and show its status (later: the whole pipeline)
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
        test-integration test-clickhouse-front demo down fuzz-smoke bench-masker bench-capture bench-sinks clean

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

test-integration: stack-up ## integration tests against the running local stack
	set -a; source $(STACK_DIR)/env; set +a; \
	$(CARGO) test --workspace --test '*' -- --test-threads=$(TEST_THREADS)

test: lint stack-up ## everything CI runs: lint, unit, integration and harness tests
	$(MAKE) --no-print-directory test-unit
	$(MAKE) --no-print-directory test-clickhouse-front
	$(MAKE) --no-print-directory test-integration

demo: stack-up ## start the local stack and show it (the pipeline joins in later issues)
	@bash $(STACK) status
	@echo
	@echo "The local stack is running. Addresses: .stack/env (source it). Stop it with: make down"

down: stack-down ## stop everything make demo started

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
