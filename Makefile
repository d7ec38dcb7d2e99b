# atl-pipeline: `make run` brings the example stack up and opens the operator console;
# `make test` runs the test suite. Both create .venv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 3000

.PHONY: run dev test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

## run: deploy domains.yml on this machine, then start the Dagster UI and daemon
run: $(VENV)/.installed
	$(BIN)/atl infra up
	$(MAKE) dev

## dev: start only the Dagster UI (http://$(HOST):$(PORT)) and daemon, instance under .atl/
dev: $(VENV)/.installed
	DAGSTER_HOME=$$($(BIN)/atl utils instance) $(BIN)/dagster dev -w workspace.yaml -h $(HOST) -p $(PORT)

## test: run the test suite
test: $(VENV)/.installed
	$(BIN)/pytest

## bench: print the benchmark tables
bench: $(VENV)/.installed
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/plan.py
	$(BIN)/python bench/deploy.py

lint: $(VENV)/.installed
	$(BIN)/ruff check atl_pipeline tests bench

## clean: stop what runs, then remove the virtualenv and all state
clean:
	-[ -x $(BIN)/atl ] && $(BIN)/atl infra down
	rm -rf $(VENV) .atl
