# finsentry: `make demo` runs the product, `make test` runs every test.
# Both bootstrap .venv on a fresh machine; re-runs are fast (the stamp tracks pyproject.toml).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help demo up test test-unit lint kafka-start kafka-stop clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "finsentry needs Python 3.11+ (found $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

demo: $(STAMP) ## The whole product on bundled dated news, sped up (finsentry up --demo; Ctrl-C stops)
	$(BIN)/finsentry up --demo

up: $(STAMP) ## The whole product: Kafka, worker, alerts, dashboard, scheduler (Ctrl-C stops)
	$(BIN)/finsentry up

test: $(STAMP) ## Run every test (starts and stops its own Kafka broker)
	$(BIN)/python -m pytest

test-unit: $(STAMP) ## Only the tests that need no services
	$(BIN)/python -m pytest -m unit

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/mypy

kafka-start: $(STAMP) ## Start the embedded Kafka broker
	$(BIN)/finsentry kafka start

kafka-stop: $(STAMP) ## Stop the embedded Kafka broker
	$(BIN)/finsentry kafka stop

clean: ## Remove local state (var/) and caches; keeps .venv
	rm -rf var .pytest_cache .mypy_cache .ruff_cache .hypothesis
