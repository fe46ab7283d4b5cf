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
# extra pytest arguments of the TFX tier, e.g. make test-tfx TFX_PYTEST_ARGS='-m "not slow"'
TFX_PYTEST_ARGS ?=

.PHONY: install install-test train test test-fast test-tfx bench lint format clean

# what training, evaluation, export and serving need (setup.py install_requires): no torch,
# timm or jax; `make train` installs only this
$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e .
	touch $@

# the test tools on top: pytest, ruff, jax (KERAS_BACKEND=jax tests), torch + timm (the
# reference oracle of the backbones)
$(VENV)/.installed-test: $(VENV)/.installed setup.py
	$(PY) -m pip install -q -e ".[dev,test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

train: install
	$(PY) -m fashion_keras.train --heads deepfashion6 --output-dir runs/demo

test: install-test lint
	$(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)
	scripts/tfx_root.sh --skip-if-unsupported test $(TFX_PYTEST_ARGS)

# the TFX pipeline tier (tests/tfx_tests): TFX 1.21 needs glibc >= 2.39, so on older hosts
# scripts/tfx_root.sh builds a Debian 13 root once (cached in ~/.cache/fashion_keras/tfx-root,
# about 7 minutes and 4.5 GB) and runs the tier inside it; natively on newer hosts
test-tfx:
	scripts/tfx_root.sh test $(TFX_PYTEST_ARGS)

# skips the slow end-to-end tier while iterating
test-fast: install-test
	$(PY) -m pytest -n $(JOBS) -m "not slow" $(PYTEST_ARGS)

$(VENV)/.installed-bench: $(VENV)/.installed setup.py
	$(PY) -m pip install -q -e ".[bench]"
	touch $@

# benchmarks print ratios against named peers measured side by side in one run (not tests):
# input pipeline, training step, inference, serving, GPU (skipped without one); the results go
# to benchmarks/results/<date>.json. BENCH_ARGS='--parts train,infer --reps 3' picks a subset.
BENCH_ARGS ?=
bench: $(VENV)/.installed-bench
	$(PY) -m benchmarks.run $(BENCH_ARGS)

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
