# Taskforge developer targets (kubebuilder conventions).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
LOCAL := .local
PYTEST_ARGS ?=

.PHONY: help setup cluster cluster-down crds lint types imports unit e2e test demo install \
        uninstall run bench helm-lint clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: ## Install everything: redis-server (apt), the venv, the control-plane binaries
	@hack/setup.sh

cluster: setup ## Start the local control plane, node agent and Redis in the background
	@$(PY) -m localcluster up --dir $(LOCAL)
	@echo "use it with:  source $(LOCAL)/env"

cluster-down: ## Stop the local control plane, agent and Redis
	@$(PY) -m localcluster down --dir $(LOCAL)

crds: ## Regenerate crds/ from the pydantic models
	@$(PY) -m taskforge.api.crdgen

lint: ## ruff
	@$(VENV)/bin/ruff check .

types: ## mypy --strict
	@$(VENV)/bin/mypy operator executor hack/localcluster

imports: ## import-linter layer contracts
	@$(VENV)/bin/lint-imports

unit: setup ## Unit and engine tests only (no cluster)
	@$(VENV)/bin/pytest $(PYTEST_ARGS) tests --ignore=tests/e2e

e2e: setup ## End-to-end tests on the local control plane (or TASKFORGE_E2E_KUBECONFIG)
	@$(VENV)/bin/pytest $(PYTEST_ARGS) tests/e2e

test: setup ## Everything CI runs: lint, types, import contracts, the whole pytest suite
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy operator executor hack/localcluster
	@$(VENV)/bin/lint-imports
	@$(PY) -m taskforge.api.crdgen --check
	@$(VENV)/bin/pytest $(PYTEST_ARGS) tests

demo: setup ## Run Taskforge for real: cluster, Redis, operator, an example workflow, live progress
	@$(PY) hack/demo.py

install: ## Install the CRDs into the current cluster (KUBECONFIG)
	@kubectl apply --server-side -f crds/

uninstall: ## Remove the CRDs (and every Workflow and WorkflowRun) from the current cluster
	@kubectl delete -f crds/ --ignore-not-found

run: ## Run the operator against the current kubeconfig
	@TASKFORGE_EXECUTOR_IMAGE=$${TASKFORGE_EXECUTOR_IMAGE:-taskforge-executor:dev} $(VENV)/bin/taskforge-operator

bench: setup ## Benchmarks (bench/*.py); figures go to bench/RESULTS.md by hand
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

helm-lint: setup ## helm lint and render the chart
	@$$(cat $(LOCAL)/bin-dir)/helm lint charts/taskforge
	@$$(cat $(LOCAL)/bin-dir)/helm template taskforge charts/taskforge >/dev/null

clean: cluster-down ## Stop the cluster and remove local state
	@rm -rf $(LOCAL)
