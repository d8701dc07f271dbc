# isrflow: the two commands a new user runs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit lint test-containers pin-base-images venv bench clean tools npm-tools

# Deployment and lint tools for the static template tests (tests/static). aws-sam-cli and awscli
# pin their own boto3/click, so they get a venv of their own; bumping a version reinstalls it.
TOOLS_VENV       := .tools-venv
SAM_CLI_VERSION  := 1.170.0
CFN_LINT_VERSION := 1.58.0
AWSCLI_VERSION   := 1.46.3
TOOLS_STAMP      := $(TOOLS_VENV)/.installed-sam$(SAM_CLI_VERSION)-cfnlint$(CFN_LINT_VERSION)-awscli$(AWSCLI_VERSION)
# checkov (the template's security checks, `make lint`) pins boto3 1.35, which aws-sam-cli's pin
# excludes: it gets a venv of its own, pinned the same way; bumping the version reinstalls it.
CHECKOV_VENV     := .checkov-venv
CHECKOV_VERSION  := 3.3.30
CHECKOV_STAMP    := $(CHECKOV_VENV)/.installed-checkov$(CHECKOV_VERSION)
# asl-validator, pinned in package.json + package-lock.json (node_modules/ is not committed).
NPM_STAMP        := node_modules/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

$(TOOLS_STAMP):
	rm -rf $(TOOLS_VENV)
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION) cfn-lint==$(CFN_LINT_VERSION) awscli==$(AWSCLI_VERSION)
	touch $(TOOLS_STAMP)

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
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

## The template's linters: cfn-lint, and checkov against checkov-baseline.yaml (accepted findings,
## each with its reason). `make test` runs both too (tests/static).
lint: $(STAMP) $(TOOLS_STAMP) $(CHECKOV_STAMP)
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
	$(BIN)/pip install --quiet --no-deps lco-banzai==1.40.0  # BANZAI's compiled median, for bench/combine.py
	$(BIN)/python bench/combine.py

clean:
	rm -rf $(VENV) demo-repo .pytest_cache
