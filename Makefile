# Pora: `make demo` and `make test` are all a new machine needs (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help venv demo up down status test unit integration browser lint typecheck rules audit audit-strict bench bench-gateway bench-detectors bench-sink bench-e2e bench-load clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is needed (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip 'setuptools>=78.1.1'  # the venv's 65.5 has known CVEs
	$(BIN)/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## create the virtual environment and install Pora with its dev tools

demo: $(STAMP) ## start the local stack and push sample reports through the gateway
	$(BIN)/pora demo

up: $(STAMP) ## start the local stack (broker, topics, gateway)
	$(BIN)/pora up

down: $(STAMP) ## stop the local stack
	$(BIN)/pora down

status: $(STAMP) ## show the local stack's processes
	$(BIN)/pora status

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .

typecheck: $(STAMP) ## mypy --strict
	$(BIN)/mypy

unit: $(STAMP) ## unit tests only (no services)
	$(BIN)/pytest tests/unit

integration: $(STAMP) ## integration tests (starts a Tansu broker for the session)
	$(BIN)/pytest tests/integration

browser: $(STAMP) ## browser tests (headless /usr/bin/chromium via Playwright; screenshots in test-results/)
	$(BIN)/pytest -m browser

rules: ## promtool: check the alert rules and run their unit tests (Debian package prometheus)
	promtool check rules monitoring/prometheus/alerts.yml
	promtool test rules monitoring/prometheus/alerts.test.yml

audit: $(STAMP) ## known vulnerabilities in the installed dependencies (PyPI advisories; lists what it could not check)
	$(BIN)/pip-audit --progress-spinner off --skip-editable --aliases on --desc off

audit-strict: $(STAMP) ## as audit, and fail unless every dependency could be checked (needs PyPI's per-version JSON)
	$(BIN)/pip-audit --progress-spinner off --skip-editable --aliases on --desc off --strict

test: $(STAMP) lint typecheck ## lint, type-check, then every test (unit, integration, browser)
	$(BIN)/pytest

bench: bench-gateway bench-detectors bench-sink bench-e2e ## all benchmarks (print figures, write bench-results/)

bench-e2e: $(STAMP) ## gateway -> ClickHouse rate and event -> feed alert latency in one run, each stage beside its baseline
	$(BIN)/python -m tests.bench.bench_e2e

bench-load: $(STAMP) ## 2,000 events/s for 10 minutes on the local stack (a simulated history, cached in bench-results/cache): RSS, lag, held state, precision/recall (LOAD_SECONDS=, LOAD_RATE=)
	$(BIN)/python -m tests.bench.bench_load $(if $(LOAD_SECONDS),--seconds $(LOAD_SECONDS)) $(if $(LOAD_RATE),--rate $(LOAD_RATE))

bench-gateway: $(STAMP) ## gateway ingestion vs the raw producer on the same broker
	$(BIN)/python -m tests.bench.bench_gateway

bench-detectors: $(STAMP) ## detector worker vs bare faust vs raw aiokafka; alert latency at 2,000 events/s
	$(BIN)/python -m tests.bench.bench_detectors

bench-sink: $(STAMP) ## sink Kafka -> ClickHouse server vs a raw clickhouse-driver insert; chdb write stage
	$(BIN)/python -m tests.bench.bench_sink

clean: ## remove the environment and local state
	-$(BIN)/pora down 2>/dev/null
	rm -rf $(VENV) .pora .pytest_cache .mypy_cache .ruff_cache
