# dxserve — the Quick start is `make serve` and `make test`; each sets up .venv itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
PYTEST_ARGS ?=

.PHONY: serve test test-ray-api test-slow lint bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned in the train extra (a CPU build); the stamps re-install when pyproject changes.
$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[train,postgres]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[train,postgres,dev]'
	touch $@ $(VENV)/.serve-installed

# Stored data is encrypted under a master key kept outside the data dir; the first `make serve`
# creates one there (set DXSERVE_MASTER_KEY_FILE or DXSERVE_MASTER_KEY to use your own).
ifeq ($(DXSERVE_MASTER_KEY),)
export DXSERVE_MASTER_KEY_FILE ?= $(HOME)/.config/dxserve/master.key
endif

serve: $(VENV)/.serve-installed
	@if [ -n "$$DXSERVE_MASTER_KEY_FILE" ] && [ ! -e "$$DXSERVE_MASTER_KEY_FILE" ]; then \
	  $(BIN)/dxserve keys create-master --out "$$DXSERVE_MASTER_KEY_FILE"; fi
	$(BIN)/dxserve serve

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The API suite again, against two replicas on a local Ray cluster over HTTP (PostgreSQL needed).
# Once a module, a pooled PostgreSQL connection of the test process is collected unclosed (its
# owner is not found yet: issue 16's note); that warning alone is not an error here.
test-ray-api: $(VENV)/.dev-installed
	DXSERVE_TEST_ON_RAY=1 $(BIN)/python -m pytest -m "not slow" tests/api \
	  -W "ignore:<psycopg.Connection object at:ResourceWarning" $(PYTEST_ARGS)

test-slow: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

# benchmarks/serve.py drives the server with wrk (Debian package `wrk`).
bench: $(VENV)/.dev-installed
	command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/oip_json.py
	$(BIN)/python benchmarks/peers.py
	$(BIN)/python benchmarks/int8.py
	$(BIN)/python benchmarks/cine.py
	$(BIN)/python benchmarks/fine_tune.py
	$(BIN)/python benchmarks/ray_serve.py
	$(BIN)/python benchmarks/accounting_cost.py
	$(BIN)/python benchmarks/durability_cost.py
	$(BIN)/python benchmarks/deidentify_notes.py
	$(BIN)/python benchmarks/philter_i2b2.py
	$(BIN)/python benchmarks/notes.py
	$(BIN)/python benchmarks/group_commit.py
	$(BIN)/python benchmarks/phantoms.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/deidentification.py
	$(BIN)/python benchmarks/ecg.py

# Ten minutes of a realistic mix at c=32, minute by minute (not part of bench: it is long).
soak: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
