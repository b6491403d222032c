# lsi: the two quick-start commands are `make demo` and `make test`.
# Needs Python 3.11+, Java 17+ and Maven (and for the tests Debian's prometheus package, which
# .ci/run installs); everything else is installed here:
# uv (from PyPI, if missing), the Python environment (.venv, from uv.lock; downloads cached
# in uv's cache outside the clone) and the Kafka jars (Maven, cached in ~/.m2 and ~/.cache/lsi).

PYTHON ?= python3
UV ?= $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")

.PHONY: help uv install install-dev demo test unit component integration lint format kafka-up kafka-down clean

help:
	@echo "make demo        - start Kafka + a worker, replay ML-100K, show recommendations and metrics"
	@echo "make test        - the whole test suite: unit + component + integration"
	@echo "make unit        - tests/unit: the fast tests, no broker"
	@echo "make component   - tests/component: slow tests (subprocesses, real training runs), no broker"
	@echo "make integration - tests/integration: against a real Kafka broker and real workers"
	@echo "make lint        - ruff, mypy and the import rules of the folders"

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --user uv \
		|| $(PYTHON) -m pip install --quiet --user --break-system-packages uv

# --inexact: the runtime packages without removing the dev tools `make test` installed, so the
# two quick-start commands never flip the environment under each other
install: uv
	$(UV) sync --frozen --no-dev --inexact

install-dev: uv
	$(UV) sync --frozen

demo: install
	$(UV) run --no-sync lsi demo

test: install-dev
	$(UV) run --no-sync pytest

unit: install-dev
	$(UV) run --no-sync pytest tests/unit

component: install-dev
	$(UV) run --no-sync pytest tests/component

integration: install-dev
	$(UV) run --no-sync pytest tests/integration

# the floor plan's import rules (tests/unit/test_layout.py checks the rest): the pure core and
# the wire formats load no Kafka client, Faust or torch
lint: install-dev
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync mypy
	@! grep -rnE '^\s*(from|import) (faust|aiokafka|kafka|torch)' lsi/core lsi/wire
	$(UV) run --no-sync python -c "import sys, lsi.core.engine; assert 'torch' not in sys.modules and 'aiokafka' not in sys.modules"

format: install-dev
	$(UV) run --no-sync ruff format .
	$(UV) run --no-sync ruff check --fix .

kafka-up: install
	$(UV) run --no-sync lsi kafka up

kafka-down: install
	$(UV) run --no-sync lsi kafka down

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
