# The two commands a newcomer needs: `make run` and `make test`. Both create .venv on first
# use (preferring Python 3.12, the Lambda runtime) and reinstall only when pyproject.toml or
# the layer requirements change.

SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
PORT  ?= 3000
HOST  ?= 127.0.0.1

# python3.12 first (also a pyenv-installed 3.12 that is not the active version), then python3.
PYTHON ?= $(shell for c in python3.12 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 2>/dev/null | sort -V | tail -n1) python3; do \
            [ -n "$$c" ] && $$c -c 'import sys' >/dev/null 2>&1 && { echo $$c; break; }; done)

.PHONY: image checkov run test test-fast i18n-check lint format typecheck bench build validate events clean help browser node-sdk

help:
	@echo "make run      serve every endpoint group on http://$(HOST):$(PORT) (SQLite + local queue)"
	@echo "make test     lint, type-check and run the whole test suite"
	@echo "make lint     ruff check, ruff format --check, mypy, import contracts (lint-imports)"
	@echo "make format   ruff format + ruff check --fix"
	@echo "make bench    run the benchmarks in bench/ and print ratios against their floors"
	@echo "make build    sam build (Lambda functions and the common layer)"
	@echo "make image    build the container image (docker, podman or buildah; IMAGE=name:tag)"
	@echo "make clean    remove .venv, .data, .aws-sam and caches"

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "no python3.12 or python3 found" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

LAYER_REQUIREMENTS := layers/common/requirements.txt layers/migrations/requirements.txt layers/reports/requirements.txt

$(STAMP): pyproject.toml $(LAYER_REQUIREMENTS) infrastructure/docker/requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(addprefix -r ,$(LAYER_REQUIREMENTS)) \
	    -r infrastructure/docker/requirements.txt -e '.[dev]'
	@touch $@

run: $(STAMP)
	PORT=$(PORT) $(BIN)/mysoulmate serve --host $(HOST)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint --failure-threshold style infrastructure/docker/Containerfile

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint i18n-check browser node-sdk checkov
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

# The page tests (tests/e2e/test_swagger_ui.py) drive Debian's Chromium through Playwright
# (never `playwright install`: no browser download here). Installed only when missing.
CHROMIUM := /usr/bin/chromium

browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "$(CHROMIUM) is missing: run 'sudo apt-get update && sudo apt-get install -y chromium'" >&2; \
	    exit 1; \
	  fi; \
	  echo "installing Debian's chromium for the page tests"; \
	  log=$$(mktemp); \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	    >"$$log" 2>&1 || { cat "$$log" >&2; rm -f "$$log"; exit 1; }; \
	  rm -f "$$log"; \
	}
	@test -x $(CHROMIUM) || { echo "$(CHROMIUM) is still missing after apt-get" >&2; exit 1; }

# The official Segment Node SDK for tests/e2e/test_stock_sdks.py, from its lockfile (a few
# seconds, only when the lockfile changes). Without npm that test skips and says why.
NODE_SDK := tests/e2e/node_sdk

node-sdk: $(NODE_SDK)/node_modules/.package-lock.json

$(NODE_SDK)/node_modules/.package-lock.json: $(NODE_SDK)/package.json $(NODE_SDK)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix $(NODE_SDK) --no-audit --no-fund --loglevel=error; \
	else \
	  echo "npm is missing: tests/e2e/test_stock_sdks.py will skip the Node SDK" >&2; \
	fi

i18n-check: $(STAMP)
	$(BIN)/mysoulmate i18n check

test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench

# sam build, then precompiled bytecode for the layer: /opt is read-only on Lambda, so without
# .pyc files every cold start compiles the package and its dependencies from source
# (measured: analytics import 991 → 490 ms). unchecked-hash: deployment resets mtimes.
build: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" SAM_CLI_TELEMETRY=0 $(BIN)/sam build --parallel --cached
	$(BIN)/python -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build

validate: $(STAMP)
	$(BIN)/cfn-lint template.yaml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sam validate --lint --region us-east-1

# The container image (infrastructure/docker/Containerfile); never part of `make test`: no
# engine runs here. Fails with a clear message when no docker, podman or buildah answers.
image:
	infrastructure/docker/build-image.sh $(IMAGE)

# checkov pins boto3 and friends to versions that conflict with the layer's pins, so it lives
# in a venv of its own inside .venv (tests/infrastructure/test_helm_chart.py finds it there).
CHECKOV_VENV := $(VENV)/tools/checkov

checkov: $(CHECKOV_VENV)/.installed

$(CHECKOV_VENV)/.installed: infrastructure/helm/checkov-requirements.txt | $(BIN)/python
	$(BIN)/python -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r infrastructure/helm/checkov-requirements.txt
	@touch $@

clean:
	rm -rf $(VENV) .data .aws-sam .mypy_cache .ruff_cache .pytest_cache $(NODE_SDK)/node_modules
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
