# classwire: `make help` lists every target. ENV selects the environment (local, dev, staging, prod).
ENV ?= local
PYTHON_VERSION ?= 3.11
export UV_PROJECT_ENVIRONMENT ?= $(CURDIR)/.venv
# The project's own uv, at one pinned version, installed on first use: a bare machine needs only Python.
UV_VERSION := 0.13.9
UV := $(CURDIR)/.venv-tools/bin/uv
export UV
RUN := $(UV) run --frozen --no-sync
# cdktf's jsii runtime still runs on the machine's Node 20; its end-of-life banner is noise in every synth.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

STACK_DIR := cdktf.out/stacks/classwire-$(ENV)
PLAN_FILE := classwire-$(ENV).tfplan
# Providers come from the machine's mirror when there is one (scripts/terraform-cli-config says how).
TF = cfg=$$(scripts/terraform-cli-config) && export TF_CLI_CONFIG_FILE=$${cfg:-$$TF_CLI_CONFIG_FILE} && \
	terraform -chdir=$(STACK_DIR)

.DEFAULT_GOAL := help
.PHONY: help install deps system-deps confirm-apply build synth init plan apply deploy destroy outputs smoke token test prove lint checkov bootstrap bench cost clean

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  ENV=$(ENV) (local, dev, staging, prod; prod must be named explicitly)"

install: system-deps deps ## Install everything: redis-server and chromium if missing, uv, the locked dependencies

# What every target needs: uv and the locked dependencies. The system packages only where a real
# redis-server or browser runs (test, prove, bench, the local deploy).
deps: .venv/.synced .venv-checkov/.synced tests/browser/node_modules/.synced clients/js/node_modules/.synced

# redis-server and chromium come from the system's packages (apt); skips what is present.
system-deps:
	@scripts/install-system-deps

$(UV):
	python3 -m venv $(CURDIR)/.venv-tools
	$(CURDIR)/.venv-tools/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Bytecode at install: a process started with PYTHONDONTWRITEBYTECODE (or a read-only tree) would
# otherwise compile every module it imports, every time.
.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON_VERSION) --compile-bytecode
	@touch $@

# checkov pins dependencies that conflict with the dev group, so it gets its own environment.
.venv-checkov/.synced: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/.venv-checkov $(UV) sync --frozen --python $(PYTHON_VERSION) --only-group checkov
	@touch $@

# The browser test's playwright-core (it drives Debian's chromium from scripts/install-system-deps).
# `npm ci` empties node_modules first, so the stamp inside it goes only once the install completed.
# Without Node there is nothing to install (and tests/browser skips).
tests/browser/node_modules/.synced: tests/browser/package.json tests/browser/package-lock.json
	@if ! command -v node >/dev/null 2>&1; then echo "node not found: tests/browser will skip"; \
	else cd tests/browser && npm ci --no-audit --no-fund && touch node_modules/.synced; fi

# The JS client's TypeScript, which checks its type declarations (tests/clients/test_js_types.py).
clients/js/node_modules/.synced: clients/js/package.json clients/js/package-lock.json
	@if ! command -v node >/dev/null 2>&1; then echo "node not found: the JS client's type check will skip"; \
	else cd clients/js && npm ci --no-audit --no-fund && touch node_modules/.synced; fi

build: deps ## Build the Lambda zip for ENV's platform into dist/ (byte-identical per commit)
	$(RUN) python scripts/build_lambdas.py --env $(ENV)

synth: build ## Synthesize ENV's stack to cdktf.out/stacks/classwire-ENV (plain Terraform JSON)
	$(RUN) python -m classwire_infra.synth --env $(ENV)

init: ## terraform init ENV's synthesized stack (its state backend comes from the config)
	$(TF) init -input=false

# init runs in plan's recipe, after the synthesis it reads, so `make -j plan` cannot reorder them.
plan: synth ## Plan ENV into cdktf.out/stacks/classwire-ENV/classwire-ENV.tfplan (+ .json for review)
	$(TF) init -input=false
	$(TF) plan -input=false -out=$(PLAN_FILE)
	$(TF) show -json $(PLAN_FILE) > $(STACK_DIR)/$(PLAN_FILE).json

apply: ## Apply exactly the saved plan of `make plan` (CI applies the plan it reviewed)
	$(TF) apply -input=false $(PLAN_FILE)

ifeq ($(ENV),local)
# Straight from make (no `uv run` between them), so that the deploy ends with make however make ends.
deploy: install ## Deploy ENV: local runs the whole system here until Ctrl-C (REDIS=cluster: on a Redis Cluster); others plan, ask, then apply that plan
	$(UV_PROJECT_ENVIRONMENT)/bin/python -m localcloud.deploy --redis $(or $(REDIS),single)
else
# Three steps in one recipe, so no `make -j` runs the apply beside (or before) its plan.
deploy:
	@$(MAKE) --no-print-directory plan
	@$(MAKE) --no-print-directory confirm-apply
	@$(MAKE) --no-print-directory apply
endif

# Asks before an apply outside CI; AUTO_APPROVE=1 skips the question (CI=true, as CI services set it, too).
confirm-apply:
	@if [ "$${CI:-}" = true ] || [ "$(AUTO_APPROVE)" = 1 ]; then exit 0; fi; \
	if [ ! -t 0 ]; then echo "no terminal to confirm the apply to $(ENV): run with AUTO_APPROVE=1" >&2; exit 1; fi; \
	printf "Apply the plan above to %s? Type %s to confirm: " "$(ENV)" "$(ENV)"; read answer; \
	[ "$$answer" = "$(ENV)" ] || { echo "not applied" >&2; exit 1; }

destroy: init ## Destroy ENV's stack (asks for confirmation)
	$(TF) destroy -input=false

outputs: deps ## Print ENV's deployed stack outputs as JSON (terraform output, checked complete)
	@$(RUN) python scripts/stack_outputs.py --env $(ENV)

smoke: deps ## Smoke-test ENV's deployed stage (endpoint from the Terraform outputs)
	$(RUN) python scripts/smoke_test.py --env $(ENV)

token: deps ## Print a local token: make token USER=<id> CLASSROOM=<id> ROLE=<teacher|student>
	@$(RUN) python -m localcloud.tokens --user "$(USER)" --classroom "$(CLASSROOM)" --role "$(or $(ROLE),student)"

test: install ## Run every test (the command CI runs)
	$(RUN) pytest

# tests/prove: chaos, faults on every hop, abuse, load, stale state (figures in reports/reliability.md);
# tests/security and tests/clients: the fuzz runs and the clients' hostile-server properties at their full
# example counts.
prove: install ## Full-size reliability run (tests/prove + tests/security + tests/clients); writes reports/reliability.md
	HYPOTHESIS_PROFILE=prove CLASSWIRE_PROVE=full $(RUN) pytest tests/prove tests/security tests/clients -q -s -o timeout=1800

lint: deps ## Static checks (.pre-commit-config.yaml): ruff, mypy, the workflows (GitHub's schema, zizmor)
	$(RUN) pre-commit run --all-files

checkov: deps ## checkov on ENV's synthesized stack (run `make synth ENV=...` first), with .checkov.yaml
	$(CURDIR)/.venv-checkov/bin/checkov --config-file .checkov.yaml --framework terraform_json \
		-f $(STACK_DIR)/cdk.tf.json

# The account's state bucket, GitHub OIDC provider and roles, with local state kept in bootstrap/accounts/ACCOUNT.
BOOTSTRAP_DIR := bootstrap/accounts/$(ACCOUNT)/stacks/classwire-bootstrap
bootstrap: deps ## Set up an AWS account once: make bootstrap REPO=org/repo ACCOUNT=123456789012 ENVS="dev staging"
	@test -n "$(REPO)" -a -n "$(ACCOUNT)" -a -n "$(ENVS)" || \
		{ echo 'usage: make bootstrap REPO=<org>/<repo> ACCOUNT=<12 digits> ENVS="<env> ..."'; exit 2; }
	$(RUN) python bootstrap/synth_bootstrap.py --repo "$(REPO)" --account "$(ACCOUNT)" $(foreach env,$(ENVS),--env $(env))
	cfg=$$(scripts/terraform-cli-config) && export TF_CLI_CONFIG_FILE=$${cfg:-$$TF_CLI_CONFIG_FILE} && \
		terraform -chdir=$(BOOTSTRAP_DIR) init -input=false && terraform -chdir=$(BOOTSTRAP_DIR) apply -input=false

bench: install ## Benchmarks (fan-out, Redis round trips, CPU per message, cold starts, zips, synth, end to end) into reports/bench.json
	$(RUN) python -m bench

cost: deps ## Monthly cost of ENV's stack for a usage profile: make cost ENV=prod PROFILE=<file> (or PROFILE=all)
	$(RUN) python -m cost --env $(ENV) --profile "$(or $(PROFILE),cost/profiles/mid_size_school.toml)"

clean: ## Remove build output (reports/ holds committed results and stays)
	rm -rf dist build cdktf.out .pytest_cache reports/tmp
