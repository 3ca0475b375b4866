# Attestly — the two commands: `make demo` and `make test`. `make help` lists the rest.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.attestly-installed

.DEFAULT_GOAL := help
.PHONY: help setup system-deps demo airflow test test-all test-unit test-integration lint fixes bench stop clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the pinned requirements and the package

# The PDF check renders report pages with pdftoppm (Debian's poppler-utils). Installed when missing and
# we may (root, as in CI); otherwise say how.
system-deps:
	@command -v pdftoppm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils) >/dev/null; \
	  else echo "install poppler-utils (pdftoppm) for the report PDF test: sudo apt-get install poppler-utils"; fi; }

demo: setup ## the whole cycle on the embedded local stack
	$(BIN)/attestly demo

airflow: setup ## run Airflow (api-server, scheduler, dag-processor, triggerer) on the local stack
	$(BIN)/python -m attestly.stack.airflow_services

test: setup system-deps ## unit, DAG-policy and integration tests on the real local stack (not the slow ones)
	$(BIN)/pytest -m "not slow"

test-all: setup system-deps ## everything, including the ~10-minute scheduler-driven backfill
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

bench: setup ## benchmarks against same-run baselines; writes bench/results/latest.json
	$(BIN)/python -m bench

stop: ## stop every process the local stack started
	@test -x $(BIN)/attestly && $(BIN)/attestly stack down || true

clean: stop ## stop the stack and delete its state (.attestly/)
	rm -rf .attestly
