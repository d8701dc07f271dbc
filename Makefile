# isrflow: the two commands a new user runs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test venv bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## Simulate a small night, run ISR on it on the embedded default, print the summary.
demo: $(STAMP)
	$(BIN)/isrflow demo --repo demo-repo

## The whole test suite (what CI runs).
test: $(STAMP)
	$(BIN)/pytest

## Benchmarks that print JSON figures (not part of the tests).
bench: $(STAMP)
	$(BIN)/python bench/isr.py

clean:
	rm -rf $(VENV) demo-repo .pytest_cache
