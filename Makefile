# Everything runs from a project-local virtualenv that `install` creates; `run` and `test`
# depend on it, so a machine with only python3 and make can run both.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Parallel test workers: the machine has 2 cores.
TEST_WORKERS ?= 2

.PHONY: install run test bench lint fmt clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

# The sharder against its simulator: 8 shards on 4 workers, simulated users talking to the
# reference bot. Ctrl-C stops it.
run: install
	$(BIN)/python -m sharder start --simulate --shards 8 --workers 4 --traffic-rate 20

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) tests

bench: install
	$(BIN)/python scripts/bench_protocol.py
	$(BIN)/python scripts/bench_simulator.py
	$(BIN)/python scripts/bench_routing.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
