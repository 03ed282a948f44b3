# dxserve — the Quick start is `make serve` and `make test`; each sets up .venv itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
PYTEST_ARGS ?=

.PHONY: serve test test-slow lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned in the train extra (a CPU build); the stamps re-install when pyproject changes.
$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[train]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[train,dev]'
	touch $@ $(VENV)/.serve-installed

serve: $(VENV)/.serve-installed
	$(BIN)/dxserve serve

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/phantoms.py
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
