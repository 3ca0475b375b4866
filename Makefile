# Attestly — the two commands: `make demo` and `make test`. `make help` lists the rest.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.attestly-installed

.DEFAULT_GOAL := help
.PHONY: help setup setup-prowler system-deps system-deps-runtime demo airflow test test-all test-unit test-integration lint fixes bench stop clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

# requirements.txt is the runtime (what the image installs); requirements-dev.txt adds the local stack,
# the seeders, the demo and the test/lint tools (it starts with -r requirements.txt).
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the pinned runtime and dev requirements and the package

# Prowler in its own virtual environment (it pins boto3, pandas and pydantic against Airflow's): ~2 minutes
# and 2.3 GB, so only what runs it asks for it (the demo, the slow tests, the benchmark), not `make test`.
PROWLER_STAMP := .venv-prowler/.attestly-installed
$(PROWLER_STAMP): requirements-prowler.txt
	@test -d .venv-prowler || $(PYTHON) -m venv .venv-prowler
	.venv-prowler/bin/pip install --quiet --disable-pip-version-check --no-deps -r requirements-prowler.txt
	@touch $(PROWLER_STAMP)

setup-prowler: $(PROWLER_STAMP) ## install Prowler in .venv-prowler from requirements-prowler.txt

# Debian packages. RUNTIME: what the product needs to render reports reproducibly (WeasyPrint's Pango,
# HarfBuzz subsetting — without it fonts are subset by fontTools, which stamps the clock into every PDF —
# and the report fonts). TEST: what the tests and the Celery stack add (pdftoppm, Chromium for the
# Evidence view's browser test, Redis for the CeleryExecutor, Node.js for the independent verifier verify.mjs). Installed when missing and we may (root
# with apt-get, as in CI); otherwise the exact command is printed and the target fails.
RUNTIME_DEBS := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core
TEST_DEBS := poppler-utils chromium redis-server nodejs

system-deps: ## install the Debian packages the product and its tests need (when missing)
	@bash scripts/system-deps.sh $(RUNTIME_DEBS) $(TEST_DEBS)

system-deps-runtime:
	@bash scripts/system-deps.sh $(RUNTIME_DEBS)

demo: setup system-deps-runtime setup-prowler ## the whole cycle on the embedded local stack
	$(BIN)/attestly demo

EXECUTOR ?= local
WORKERS ?= 2
airflow: setup system-deps-runtime ## run Airflow on the local stack (EXECUTOR=celery WORKERS=2 for Celery)
	@if [ "$(EXECUTOR)" = celery ]; then bash scripts/system-deps.sh redis-server; fi
	$(BIN)/python -m attestly_dev.stack.airflow_services --executor $(EXECUTOR) --workers $(WORKERS)

# pytest-xdist workers, each a session with its own local stack (TEST_WORKERS=0: one process, serially).
TEST_WORKERS ?= 2
test: setup system-deps ## unit, DAG-policy and integration tests on the real local stack, 2 workers (not the slow ones)
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not slow" --durations=10

test-all: setup system-deps setup-prowler ## everything, including the ~10-minute scheduler-driven backfill
	$(BIN)/pytest

test-unit: setup
	$(BIN)/pytest -m unit

test-integration: setup
	$(BIN)/pytest -m integration

lint: setup ## ruff, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fixes: setup ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup setup-prowler ## benchmarks against same-run baselines; writes bench/results/latest.json
	$(BIN)/python -m bench

stop: ## stop every process the local stack started
	@test -x $(BIN)/attestly && $(BIN)/attestly stack down || true

clean: stop ## stop the stack and delete its state (.attestly/)
	rm -rf .attestly
