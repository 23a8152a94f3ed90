# Taskforge developer targets (kubebuilder conventions).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
LOCAL := .local
PYTEST_ARGS ?=
# The local cluster's node: agent (fast, host processes) or kubelet (real kubelet + containerd).
NODE ?= agent

.PHONY: help setup cluster cluster-down crds lint types imports unit e2e test demo install \
        uninstall run bench bench-all helm-lint chart-docs clean pythons image e2e-real-node \
        ui-screenshots

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: ## Install everything: apt packages, the venv, the control-plane and node binaries
	@hack/setup.sh

# NODE=kubelet needs the images (pause, busybox, python, taskforge) before the node starts.
cluster: setup $(if $(filter kubelet,$(NODE)),image) ## Start the local control plane, a node (NODE=agent|kubelet) and Redis in the background
	@$(PY) -m localcluster up --dir $(LOCAL) --node $(NODE)
	@echo "use it with:  source $(LOCAL)/env"

cluster-down: ## Stop the local cluster; a real node leaves no container, mount, veth or rule
	@$(PY) -m localcluster down --dir $(LOCAL)

image: setup ## Build the images with buildah (Dockerfile on a debootstrap base); load a running real node
	@sock=$(abspath $(LOCAL))/cluster/node/containerd/containerd.sock; \
	 CTR=$$(hack/build-node-bins.sh | tail -n 1)/ctr \
	 hack/build-images.sh $$([ -S $$sock ] && echo --import $$sock)

crds: ## Regenerate crds/ and the chart's CRD templates from the pydantic models
	@$(PY) -m taskforge.api.crdgen

lint: ## ruff
	@$(VENV)/bin/ruff check .

types: ## mypy --strict
	@$(VENV)/bin/mypy operator executor hack/localcluster

imports: ## import-linter layer contracts
	@$(VENV)/bin/lint-imports

# The other Pythons pyproject declares (requires-python); hack/setup.sh makes a venv for each.
PYTHONS := 3.12 3.13
# Both at once: the suites mostly wait (subprocesses, timeouts), so two take little more
# wall time than one. Each keeps its log in .local/; a failing one is printed whole.
PYTHONS_TEST = mkdir -p $(LOCAL); for v in $(PYTHONS); do ( log=$(LOCAL)/pytest-py$$v.log; \
  .venv-py$$v/bin/pytest -q -p no:cacheprovider --basetemp=$(LOCAL)/pytest-py$$v \
  tests/unit tests/engine tests/executor >$$log 2>&1; s=$$?; [ $$s = 0 ] || cat $$log; \
  echo "== Python $$v: $$(tail -n 1 $$log)"; exit $$s ) & done; \
  rc=0; for v in $(PYTHONS); do wait -n || rc=1; done; exit $$rc

pythons: setup ## The unit, engine and executor suites on the other declared Pythons (3.12, 3.13)
	@$(PYTHONS_TEST)

unit: setup ## Unit and engine tests only (no cluster)
	@$(VENV)/bin/pytest $(PYTEST_ARGS) tests --ignore=tests/e2e

e2e: setup ## End-to-end tests on the local control plane (or TASKFORGE_E2E_KUBECONFIG)
	@$(VENV)/bin/pytest $(PYTEST_ARGS) tests/e2e

e2e-real-node: image ## The e2e tests marked real_node or both_nodes, on a real kubelet + containerd node
	@$(VENV)/bin/pytest $(PYTEST_ARGS) --node=kubelet tests/e2e

test: setup ## Everything CI runs: lint, types, import contracts, the whole pytest suite
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy operator executor hack/localcluster
	@$(VENV)/bin/lint-imports
	@$(PY) -m taskforge.api.crdgen --check
	@$(VENV)/bin/pytest $(PYTEST_ARGS) tests
	@$(PYTHONS_TEST)
	@$(MAKE) --no-print-directory e2e-real-node

demo: setup ## Run Taskforge for real: cluster, Redis, operator, an example workflow, live progress
	@$(PY) hack/demo.py

install: ## Install the CRDs into the current cluster (KUBECONFIG)
	@kubectl apply --server-side -f crds/

uninstall: ## Remove the CRDs (and every Workflow and WorkflowRun) from the current cluster
	@kubectl delete -f crds/ --ignore-not-found

run: ## Run the operator against the current kubeconfig
	@TASKFORGE_EXECUTOR_IMAGE=$${TASKFORGE_EXECUTOR_IMAGE:-taskforge-executor:dev} $(VENV)/bin/taskforge-operator

# A few minutes: the operator against the floor controller, interleaved (ratios), and its API
# writes per step. BENCH="..." picks other bench_operator.py scenarios; bench-all runs them all.
BENCH ?= floor writes
bench: setup ## The operator against the floor controller (ratios) and its writes per step
	@$(PY) bench/bench_operator.py $(BENCH)

bench-all: setup ## Every benchmark (bench/bench_*.py, long); figures go to bench/RESULTS.md by hand
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

ui-screenshots: setup ## Screenshots of the real web UI into docs/ui/ (local cluster, operator, chromium)
	@$(PY) hack/ui_screenshots.py

helm-lint: setup ## helm lint and render the chart
	@$$(cat $(LOCAL)/bin-dir)/helm lint charts/taskforge
	@$$(cat $(LOCAL)/bin-dir)/helm template taskforge charts/taskforge >/dev/null

chart-docs: setup ## Regenerate charts/taskforge/README.md from values.yaml (helm-docs)
	@$$(cat $(LOCAL)/bin-dir)/helm-docs --chart-search-root charts

clean: cluster-down ## Stop the cluster and remove local state
	@rm -rf $(LOCAL)
