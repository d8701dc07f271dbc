# isrflow: the two commands a new user runs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit lint test-containers pin-base-images venv bench clean tools npm-tools freeze-constraints

# Every pinned Python version is in a constraints file, none in this Makefile: constraints.txt
# (.venv, the container images, the registry layer), constraints-tools.txt (.tools-venv: SAM CLI,
# cfn-lint, AWS CLI), constraints-checkov.txt (.checkov-venv), constraints-bench.txt (`make bench`).
# The tools get venvs of their own because their pins conflict: aws-sam-cli and awscli pin their own
# boto3/click, and checkov pins a boto3 that aws-sam-cli excludes. Editing a constraints file
# reinstalls the venv it pins.
CONSTRAINTS         := constraints.txt
TOOLS_CONSTRAINTS   := constraints-tools.txt
CHECKOV_CONSTRAINTS := constraints-checkov.txt
BENCH_CONSTRAINTS   := constraints-bench.txt
TOOLS_VENV          := .tools-venv
TOOLS_STAMP         := $(TOOLS_VENV)/.installed
CHECKOV_VENV        := .checkov-venv
CHECKOV_STAMP       := $(CHECKOV_VENV)/.installed
# asl-validator, pinned in package.json + package-lock.json (node_modules/ is not committed).
NPM_STAMP        := node_modules/.installed

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

$(TOOLS_STAMP): $(TOOLS_CONSTRAINTS)
	rm -rf $(TOOLS_VENV)
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/pip install --quiet -c $(TOOLS_CONSTRAINTS) aws-sam-cli cfn-lint awscli
	touch $(TOOLS_STAMP)

$(CHECKOV_STAMP): $(CHECKOV_CONSTRAINTS)
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -c $(CHECKOV_CONSTRAINTS) checkov
	touch $(CHECKOV_STAMP)

## sam, cfn-lint and aws in .tools-venv/bin; checkov in .checkov-venv/bin.
tools: $(TOOLS_STAMP) $(CHECKOV_STAMP)

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NPM_STAMP)

## asl-validator in node_modules/.bin.
npm-tools: $(NPM_STAMP)

## Simulate a small night, run ISR on it on the embedded default, print the summary.
demo: $(STAMP)
	$(BIN)/isrflow demo --repo demo-repo

## The whole test suite (what CI runs), tests/containers included: it installs and starts Docker
## when absent, builds the stand-in Lambda base and the images, and runs every function in its container.
test: $(STAMP) $(TOOLS_STAMP) $(CHECKOV_STAMP) $(NPM_STAMP)
	$(BIN)/pytest

## The fast loop while editing: everything but the container, full-size and PostgreSQL tests.
unit: $(STAMP)
	$(BIN)/pytest -m "not fullsize and not postgres" --ignore=tests/containers -x

## All linters: ruff (lint + format check) and mypy with pyproject.toml's settings, the venv's pinned
## versions (the pre-commit hooks run the same binaries); cfn-lint on the template, and checkov against
## checkov-baseline.yaml (accepted findings, each with its reason). `make test` runs them too (tests/static).
lint: $(STAMP) $(TOOLS_STAMP) $(CHECKOV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(TOOLS_VENV)/bin/cfn-lint template.yaml
	$(BIN)/python tests/static/checkov_gate.py

## Only the container tests (sam build + sam local invoke of every function with every events/ file).
test-containers: $(STAMP) $(TOOLS_STAMP)
	$(BIN)/pytest tests/containers

## On a machine that can reach public.ecr.aws: pin the images' base to its current digest in template.yaml.
pin-base-images: $(STAMP)
	$(BIN)/python -m isrflow.local.containers.pin template.yaml

## Benchmarks that print JSON figures (not part of the tests).
bench: $(STAMP)
	$(BIN)/python bench/isr.py
	$(BIN)/pip install --quiet --no-deps -c $(BENCH_CONSTRAINTS) lco-banzai  # BANZAI's compiled median, for bench/combine.py
	$(BIN)/python bench/combine.py

# $(call freeze,VENV,FILE): FILE's comment header, then what VENV runs (pip freeze, without isrflow
# itself and without the bench-only packages of $(BENCH_CONSTRAINTS)).
freeze = { grep '^\#' $(2); $(1)/bin/pip freeze --exclude-editable --exclude lco-banzai; } > $(2).new && mv $(2).new $(2)

## Rewrite the constraints files from what the venvs run now (after installing a new version in one).
freeze-constraints: $(STAMP) $(TOOLS_STAMP) $(CHECKOV_STAMP)
	$(call freeze,$(VENV),$(CONSTRAINTS))
	$(call freeze,$(TOOLS_VENV),$(TOOLS_CONSTRAINTS))
	$(call freeze,$(CHECKOV_VENV),$(CHECKOV_CONSTRAINTS))
	touch $(STAMP) $(TOOLS_STAMP) $(CHECKOV_STAMP)  # the venvs are what the files now say

clean:
	rm -rf $(VENV) demo-repo .pytest_cache
