# classwire: `make help` lists every target. ENV selects the environment (local, dev, staging, prod).
ENV ?= local
PYTHON_VERSION ?= 3.11
export UV_PROJECT_ENVIRONMENT ?= $(CURDIR)/.venv
UV := uv
RUN := $(UV) run --frozen --no-sync
PYTHONPATH := $(CURDIR)/lambdas:$(CURDIR)/terraform:$(CURDIR)/clients/python:$(CURDIR)
export PYTHONPATH
# cdktf's jsii runtime still runs on the machine's Node 20; its end-of-life banner is noise in every synth.
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.DEFAULT_GOAL := help
.PHONY: help install build synth plan deploy destroy test lint bench cost token prove clean

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  ENV=$(ENV) (local, dev, staging, prod; prod must be named explicitly)"

install: .venv/.synced ## Install the locked Python dependencies into .venv

.venv/.synced: pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON_VERSION)
	@touch $@

build: install ## Build the Lambda zip for ENV's platform into dist/ (byte-identical per commit)
	$(RUN) python scripts/build_lambdas.py --env $(ENV)

synth: install ## Synthesize ENV's stack to cdktf.out/stacks/classwire-ENV
	$(RUN) python terraform/main.py --env $(ENV)

test: install ## Run every test (the command CI runs)
	$(RUN) pytest

lint: install ## Static checks
	$(RUN) ruff check lambdas terraform scripts tests

clean: ## Remove build output
	rm -rf dist build cdktf.out .pytest_cache
