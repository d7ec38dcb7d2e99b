# atl-pipeline: `make run` brings the example stack up and opens the operator console;
# `make test` runs the test suite, `make test-fast` its fast tier. Each creates .venv on first use.
# `make mutation`: docs/testing.md.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 3000
# `make test`'s pytest-xdist workers: more than the 2 cores, as the tests mostly wait on processes
WORKERS ?= 4

.PHONY: run dev test test-fast mutation bench lint clean operations-tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python $(BIN)/checkov
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Checkov (the policy check's scanner) in a virtualenv of its own: its pinned dependencies conflict with
# Dagster's. Linked beside atl, where the pipeline looks for it.
$(BIN)/checkov: | $(BIN)/python
	$(PYTHON) -m venv $(VENV)-checkov
	$(VENV)-checkov/bin/pip install --quiet checkov==3.3.30
	ln -sf ../../$(VENV)-checkov/bin/checkov $@

## run: deploy domains.yml on this machine, then start the Dagster UI and daemon
run: $(VENV)/.installed operations-tools
	$(BIN)/atl infra up
	$(MAKE) dev

OPERATIONS_PACKAGES = prometheus prometheus-blackbox-exporter prometheus-alertmanager restic rsyslog
OPERATIONS_TOOLS = prometheus prometheus-blackbox-exporter prometheus-alertmanager restic rsyslogd

## operations-tools: Prometheus, the blackbox exporter, Alertmanager, restic and rsyslog (Debian packages), when missing
operations-tools:
	@missing=; for tool in $(OPERATIONS_TOOLS); do PATH=$$PATH:/usr/sbin command -v $$tool >/dev/null || missing=1; done; \
	[ -z "$$missing" ] || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $(OPERATIONS_PACKAGES); } || \
	  { echo "install the Debian packages $(OPERATIONS_PACKAGES)" >&2; exit 1; }

## dev: start only the console: the Dagster UI and daemon behind Caddy on http://$(HOST):$(PORT), instance under .atl/
dev: $(VENV)/.installed
	$(BIN)/atl utils console --host $(HOST) --port $(PORT)

## test: run the whole test suite, in $(WORKERS) parallel workers (most tests wait on real processes)
test: $(VENV)/.installed
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup

## test-fast: the fast tier, no real process: stage logic, sensors, configuration and rules, the CLI
test-fast: $(VENV)/.installed
	HYPOTHESIS_PROFILE=fast $(BIN)/pytest -m "not slow" -n 2 --dist loadgroup

$(VENV)/.mutation: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test,mutation]'
	touch $@

## mutation: mutmut over the core modules, each mutant against the fast tests that reach it; the counts per module
mutation: $(VENV)/.mutation
	rm -rf mutants
	HYPOTHESIS_PROFILE=fast $(BIN)/mutmut run
	$(BIN)/mutmut results --all true | $(BIN)/python tests/mutation_table.py
	@echo "the survivors: $(BIN)/mutmut results; what one changes: $(BIN)/mutmut show NAME"

## bench: print the benchmark tables
bench: $(VENV)/.installed
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/plan.py
	$(BIN)/python bench/deploy.py
	$(BIN)/python bench/health.py
	$(BIN)/python bench/gitops.py
	$(BIN)/python bench/noop.py
	$(BIN)/python bench/reliability.py
	$(BIN)/python bench/incidents.py
	$(BIN)/python bench/autoscale.py
	$(BIN)/python bench/logs.py
	$(BIN)/python bench/backup.py
	$(BIN)/python bench/policy.py

## lint: ruff on the code, the Dagster definitions (`dg check defs`), `atl quality lint` on domains.yml,
## and the generated docs up to date
lint: $(VENV)/.installed
	$(BIN)/ruff check atl_pipeline tests bench
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/dg check defs
	$(BIN)/atl quality lint
	$(BIN)/atl docs build --check

## clean: stop what runs, then remove the virtualenv and all state
clean:
	-[ -x $(BIN)/atl ] && $(BIN)/atl infra down
	rm -rf $(VENV) .atl mutants
