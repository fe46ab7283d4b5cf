# Two commands do all the set-up on a fresh machine:
#   make train   creates the venv, installs, trains on the embedded demo data and exports
#   make test    creates the venv, installs, runs lint and the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pytest-xdist workers (the CI machine has 2 cores)
JOBS ?= 2
# extra pytest arguments, e.g. make test PYTEST_ARGS='-m "not slow"'
PYTEST_ARGS ?=

.PHONY: install train test test-fast bench lint format clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e ".[dev,test]"
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) -m fashion_keras.train --heads deepfashion6 --output-dir runs/demo

test: install lint
	$(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

# skips the slow end-to-end tier while iterating
test-fast: install
	$(PY) -m pytest -n $(JOBS) -m "not slow" $(PYTEST_ARGS)

# benchmarks print ratios measured side by side in one run (not tests)
bench: install
	mkdir -p benchmarks/results
	$(PY) benchmarks/serving_bench.py --json benchmarks/results/serving-$$(date +%Y-%m-%d).json

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
