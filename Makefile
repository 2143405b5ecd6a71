# fer-bench — every target sets up the virtual environment first (a no-op when it is up to date).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
METHOD ?= baseline
DATA ?= synthetic
PROFILE ?= cpu
ARGS ?=

.PHONY: setup test test-fast bench perf lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

test: setup
	WANDB_MODE=disabled $(BIN)/python -m pytest

test-fast: setup
	WANDB_MODE=disabled $(BIN)/python -m pytest -m "not slow"

bench: setup
	$(BIN)/fer-bench bench method=$(METHOD) data=$(DATA) $(if $(PROFILE),profile=$(PROFILE)) $(ARGS)

perf: setup
	WANDB_MODE=disabled $(BIN)/fer-bench perf $(ARGS)

lint: setup
	$(BIN)/ruff check src tests

clean:
	rm -rf runs results .pytest_cache .ruff_cache build src/*.egg-info
