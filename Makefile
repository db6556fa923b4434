# sinker: see README.md. Every target works from a fresh clone after `make setup`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PYTEST  := $(BIN)/python -m pytest

.PHONY: setup test test-unit test-integration coverage stack-up stack-down demo bench build clean

setup: $(VENV)/.installed kafka-jars

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

kafka-jars:
	$(BIN)/python -m tests.stack fetch

test: setup
	$(PYTEST) tests

test-unit: setup
	$(PYTEST) tests/unit

test-integration: setup
	$(PYTEST) tests/integration

# Line coverage of lib/ over the whole suite (code run by `sinker run` subprocesses is not
# counted; the in-process tests cover the same modules). Aim: 90%.
coverage: setup
	$(PYTEST) --cov=lib --cov-report=term-missing:skip-covered --cov-report=html:build/coverage tests

stack-up: setup
	$(BIN)/python -m tests.stack up

stack-down:
	$(BIN)/python -m tests.stack down

demo: setup
	$(BIN)/python -m tests.stack demo

bench: setup
	$(BIN)/python -m bench

build: setup
	$(BIN)/pyinstaller --noconfirm --clean build.spec

clean:
	rm -rf build dist .pytest_cache
