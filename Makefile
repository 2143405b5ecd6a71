# fer-bench — every target sets up the virtual environment first (a no-op when it is up to date).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
METHOD ?= baseline
DATA ?= synthetic
PROFILE ?= cpu
ARGS ?=
# METHOD=all runs the suite experiments/suites/all.yaml; SUITE=<name> any other suite.
SUITE ?= $(if $(filter all,$(METHOD)),all)

.PHONY: setup test test-fast bench sweep report perf lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

test: setup
	WANDB_MODE=disabled $(BIN)/python -m pytest -n auto --dist worksteal --durations=15

test-fast: setup
	WANDB_MODE=disabled $(BIN)/python -m pytest -n auto --dist worksteal -m "not slow" --durations=10

bench: setup
	$(BIN)/fer-bench bench $(if $(SUITE),suite=$(SUITE) $(if $(filter command line,$(origin DATA)),data=$(DATA)),method=$(METHOD) data=$(DATA)) $(if $(PROFILE),profile=$(PROFILE)) $(ARGS)

# Registers experiments/sweeps/$(METHOD).yaml with W&B and starts an agent here (ARGS="count=20 entity=me").
sweep: setup
	$(BIN)/fer-bench sweep experiments/sweeps/$(METHOD).yaml $(ARGS)

report: setup
	$(BIN)/fer-bench report $(ARGS)

perf: setup
	WANDB_MODE=disabled $(BIN)/fer-bench perf $(ARGS)

lint: setup
	$(BIN)/ruff check src tests examples

clean:
	rm -rf runs results .pytest_cache .ruff_cache build src/*.egg-info
