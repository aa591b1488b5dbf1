# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DATA ?= data/synthetic
DEMO_RUN ?= runs/demo
PYTEST_ARGS ?=
# Two pytest-xdist workers per backend (tests/conftest.py keeps the tiny recipe run's tests,
# and the multi-process distribution tests, each on one worker).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS)

.PHONY: demo test check lint clean constraints

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs pin every package to the tested version (constraints.txt), byte-compiled: with
# PYTHONDONTWRITEBYTECODE set (as here and in CI) nothing else writes the .pyc files, and
# every process would compile TensorFlow's modules again.
PIP_INSTALL := $(BIN)/python -m pip install --quiet -c constraints.txt

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) -e ".[test]"
	touch $@

$(DEMO_DATA)/meta.csv: | $(VENV)/.installed
	$(BIN)/python tools/make_synthetic_dataset.py $(DEMO_DATA)

demo: $(VENV)/.installed $(DEMO_DATA)/meta.csv
	$(BIN)/python tools/train.py configs/demo.yaml --data-root $(DEMO_DATA) --out $(DEMO_RUN) --resume

lint: $(VENV)/.installed-test
	$(BIN)/ruff check asc_keras tools tests
	$(BIN)/ruff format --check asc_keras tools tests

# One pytest process per Keras backend: the backend is fixed at the first `import keras`.
# Backend-independent tests (data, front end, configs) run once, in the TensorFlow process.
test: $(VENV)/.installed-test lint
	KERAS_BACKEND=tensorflow $(PYTEST) $(PYTEST_ARGS)
	KERAS_BACKEND=jax $(PYTEST) -m multi_backend $(PYTEST_ARGS)
	KERAS_BACKEND=torch $(PYTEST) -m multi_backend $(PYTEST_ARGS)

# While working: lint and the fast tests of every module, TensorFlow backend only (no
# end-to-end runs, no multi-process distribution scenarios). `make test` runs everything.
check: $(VENV)/.installed-test lint
	KERAS_BACKEND=tensorflow $(PYTEST) -m "not slow and not distributed" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The newest versions pyproject.toml allows, pinned into constraints.txt, then the whole suite
# on them in a fresh environment (docs/testing.md).
constraints:
	rm -rf $(VENV)-refresh
	$(PYTHON) -m venv $(VENV)-refresh
	$(VENV)-refresh/bin/python -m pip install --quiet --upgrade pip
	$(VENV)-refresh/bin/python -m pip install --quiet -e ".[test]"
	{ sed -n '/^#/p' constraints.txt; $(VENV)-refresh/bin/python -m pip freeze --exclude-editable \
	  | sed 's/^torch==\([0-9.]*\)+.*/torch==\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(VENV)-refresh
	$(MAKE) clean test
