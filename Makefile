# Two commands do all the set-up:
#   make run    create .venv, install alerts, run it on config/ with SQLite
#   make test   create .venv (+ test peers), start what the tests need, lint, type-check, test
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= config

.PHONY: run test lint venv bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: venv
	$(VENV)/bin/alerts --config $(CONFIG) run

lint: venv
	$(VENV)/bin/ruff check $(wildcard src tests bench)
	$(VENV)/bin/ruff format --check $(wildcard src tests bench)
	$(VENV)/bin/mypy

test: venv
	bash scripts/test-services
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest

bench: venv
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
