# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DATA ?= data/synthetic
DEMO_RUN ?= runs/demo
PYTEST_ARGS ?=

.PHONY: demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
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
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q $(PYTEST_ARGS)
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q -m multi_backend $(PYTEST_ARGS)
	KERAS_BACKEND=torch $(BIN)/python -m pytest -q -m multi_backend $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
