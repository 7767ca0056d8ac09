# corral — developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON        ?= python3
VENV          ?= .venv
PY            := $(VENV)/bin/python
# Kubernetes release the local control plane is built from (see tools/k8s/).
K8S_VERSION   ?= 1.36.3
CORRAL_CACHE  ?= $(HOME)/.cache/corral
export K8S_VERSION CORRAL_CACHE

.PHONY: help
help: ## List the targets
	@if [ -t 1 ]; then on='\033[36m'; off='\033[0m'; else on=; off=; fi; \
	awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "} \
	  /^[a-zA-Z0-9_-]+:.*## / {n++; name[n] = $$1; text[n] = $$2; if (length($$1) > w) w = length($$1)} \
	  END {for (i = 1; i <= n; i++) printf "  %s%-" w "s%s  %s\n", on, name[i], off, text[i]}' \
	  $(MAKEFILE_LIST)

# constraints.txt pins every package the venv holds, so a fresh machine gets the
# versions CI passed with (the generated CRDs are compared byte for byte).
# Refresh with `make lock` after changing pyproject.toml's dependencies.
# The local platform (localplatform/, import package corral_local) is its own
# distribution: installed here, editable, for the tests, `make dev`, the
# cluster targets and the benchmarks; never part of `pip install corral`.
$(VENV)/.stamp: pyproject.toml constraints.txt localplatform/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]' -e ./localplatform
	touch $@

.PHONY: lock
lock: ## Re-pin constraints.txt to the newest versions pyproject.toml allows
	rm -rf $(VENV)/.stamp .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q -e '.[dev]' -e ./localplatform
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^corral' > constraints.txt
	rm -rf .lock-venv

.PHONY: venv
venv: $(VENV)/.stamp ## Create the virtualenv with corral, the local platform and the dev tools

.PHONY: cluster-bins
cluster-bins: ## Build etcd, kube-apiserver, controller-manager, scheduler, kubectl, helm (cached)
	bash tools/k8s/build.sh

# KEDA release built for the side-by-side benchmark (issue #13; bench/keda/README.md).
# Not part of `make test`, CI or .ci/run. On a shared machine run it with low priority:
# `nice -n 19 ionice -c3 make keda-bins CORRAL_BUILD_JOBS=1`.
KEDA_VERSION  ?= 2.21.0
export KEDA_VERSION

.PHONY: keda-bins
keda-bins: ## Build KEDA's operator and metrics adapter from the Go module proxy, copy its CRDs (cached under ~/.cache/corral/keda-v$KEDA_VERSION)
	bash tools/keda/build.sh

# Debian's `prometheus` package whose promtool checks the chart's alerts in the e2e
# tier (Prometheus 2.42; bookworm). Fetched with apt-get download in seconds, where a
# cold Go build took 70 minutes on CI's machine (tools/promtool/README.md). Pinned by
# Prometheus' version: any Debian revision of it (the lists offer only the newest);
# PROMTOOL_DEB_VERSION=<exact Debian version> pins one revision instead.
PROMTOOL_VERSION ?= 2.42.0
PROMTOOL_DEB_VERSION ?=
export PROMTOOL_VERSION PROMTOOL_DEB_VERSION

.PHONY: promtool
promtool: ## Fetch promtool from Debian's prometheus package (apt-get download; cached under ~/.cache/corral/promtool-v$PROMTOOL_VERSION)
	bash tools/promtool/fetch.sh

# Prometheus Operator release whose CRDs the chart's ServiceMonitor, PodMonitor
# and PrometheusRule are dry-run against in the e2e tier.
PROMETHEUS_OPERATOR_VERSION ?= 0.85.0
export PROMETHEUS_OPERATOR_VERSION

.PHONY: monitoring-crds
monitoring-crds: ## Fetch the Prometheus Operator's CRDs from the Go module proxy (cached under ~/.cache/corral)
	bash tools/monitoring-crds/fetch.sh

.PHONY: cluster-up
cluster-up: venv cluster-bins ## Start the local control plane in the background; prints `export KUBECONFIG=...`
	@$(PY) -m corral_local.localcluster up

.PHONY: cluster-down
cluster-down: venv ## Stop the local control plane started by cluster-up
	$(PY) -m corral_local.localcluster down

.PHONY: cluster-status
cluster-status: venv ## Say whether the local control plane is up, and where
	$(PY) -m corral_local.localcluster status

.PHONY: lint
lint: venv ## ruff check + format check + import contracts (pyproject.toml [tool.importlinter])
	$(VENV)/bin/ruff check operator localplatform tests bench
	$(VENV)/bin/ruff format --check operator localplatform tests bench
	$(VENV)/bin/lint-imports --no-cache

.PHONY: typecheck
typecheck: venv ## mypy --strict on corral, the local platform (corral_local), tests/ and bench/
	$(VENV)/bin/mypy

.PHONY: test-unit
test-unit: venv ## Unit tier: no network, cluster or database (< 30 s)
	$(PY) -m tests.tiers unit

.PHONY: test-integration
test-integration: venv ## Integration tier: real PostgreSQL started by the tests
	$(PY) -m tests.tiers integration

.PHONY: test-browser
test-browser: venv ## Browser tier: the dashboard in headless Chromium (Debian's chromium + chromium-driver), real PostgreSQL
	$(PY) -m tests.tiers browser

.PHONY: dashboard-screenshots
dashboard-screenshots: venv ## Run the browser tier and keep its screenshots in docs/dashboard/ (for docs/dashboard.md)
	CORRAL_SCREENSHOTS_DIR=$(CURDIR)/docs/dashboard $(PY) -m tests.tiers browser

.PHONY: test-e2e
test-e2e: venv cluster-bins promtool monitoring-crds ## End-to-end tier: real kube-apiserver (local, or CORRAL_E2E_KUBECONFIG)
	$(PY) -m tests.tiers e2e

.PHONY: test-chaos
test-chaos: venv cluster-bins ## Chaos drills: a database restarted, frozen, cut and poisoned under real workers; the API server frozen, the leader killed
	$(PY) -m tests.tiers chaos

.PHONY: test
test: venv cluster-bins promtool monitoring-crds ## All five tiers; prints how many tests each tier ran
	$(PY) -m tests.tiers unit integration browser e2e chaos

# --- operator API: CRDs generated from the pydantic models (corral.api) ---
CRD_DIRS := crds charts/corral/crds

.PHONY: crds
crds: venv ## Write crds/*.yaml and the chart's copy from operator/corral/api
	$(PY) -m corral.api.crdgen $(addprefix --out ,$(CRD_DIRS))

.PHONY: verify-crds
verify-crds: venv ## Fail when the checked-in CRDs differ from the models (run `make crds`)
	$(PY) -m corral.api.crdgen --check $(addprefix --out ,$(CRD_DIRS))
# --- end operator API ---

# ---- dev environment and node agent (issue 3) ------------------------------------------------
.PHONY: dev
dev: venv cluster-bins ## Control plane + node agent (3 nodes, 2 regions) + Postgres (+ CRDs, operator, example when present); Ctrl-C stops all
	$(PY) -m corral_local.dev up

.PHONY: dev-down
dev-down: venv ## Stop what `make dev` started (from another terminal)
	$(PY) -m corral_local.dev down

# --- worker runtime and queue benchmark (issue 4, worker) ---
.PHONY: bench-queue
bench-queue: venv ## Queue benchmark vs PgQueuer, procrastinate and River (throwaway Postgres; River built with Go once; BENCH_ARGS=--quick)
	$(PY) -m bench.queue $(BENCH_ARGS)
# --- end worker runtime ---

.PHONY: bench-start
bench-start: venv ## Worker start-up: launch to ready and to first claim (median of 10) beside PgQueuer and the stack's floor (and the first claim over it, launch by launch); the slowest imports; resident memory at ready beside PgQueuer's
	$(PY) -m bench.start $(BENCH_ARGS)

.PHONY: bench-ack-versions
bench-ack-versions: venv ## Server time a job of claim+complete, this release's functions (v5) beside the previous release's (v4), batches alternating on one server
	$(PY) -m bench.ack_versions $(BENCH_ARGS)

.PHONY: bench-herd
bench-herd: venv ## Idle workers woken by every NOTIFY: worker and server CPU a job with 1, 2, 4 and 8 idle workers at 100 jobs/s, beside PgQueuer
	$(PY) -m bench.herd $(BENCH_ARGS)

.PHONY: bench-leases
bench-leases: venv ## Held jobs' leases: row writes, WAL and server CPU a held job and minute (1,000 jobs held 20 s), this release's renewal beside every lease on every beat and beside PgQueuer
	$(PY) -m bench.leases $(BENCH_ARGS)

.PHONY: bench-schedules
bench-schedules: venv ## Schedules: 10,000 due in one minute fired by one process; a pass with nothing due at 10k and 100k schedules
	$(PY) -m bench.schedules $(BENCH_ARGS)

.PHONY: bench-dashboard
bench-dashboard: venv ## Dashboard reads at 1,000,000 finished + 100,000 waiting jobs: rollup, each read (median of 5), Seq Scans of the finished table
	$(PY) -m bench.dashboard $(BENCH_ARGS)

.PHONY: bench-scale
bench-scale: venv cluster-bins ## Autoscaler benchmark on the local control plane: reaction, first job, drains, 200 pools (BENCH_ARGS=--quick)
	$(PY) -m bench.scale $(BENCH_ARGS)

.PHONY: bench-scale-peers
bench-scale-peers: venv cluster-bins keda-bins ## corral vs KEDA (defaults and tuned) on the same bursts, cluster, queue and worker pods; ~40 min (BENCH_ARGS=--quick: ~12)
	$(PY) -m bench.scale_peers $(BENCH_ARGS)

# --- images (issue 9): worker-image/Dockerfile, targets worker and operator ---
DOCKER         ?= docker
IMAGE_REGISTRY ?= ghcr.io/corral-dev
# The chart's appVersion and pyproject.toml's version: what the chart pulls by default.
IMAGE_TAG      ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
WORKER_IMAGE   := $(IMAGE_REGISTRY)/corral-worker:$(IMAGE_TAG)
OPERATOR_IMAGE := $(IMAGE_REGISTRY)/corral-operator:$(IMAGE_TAG)

# $(call need-docker,TARGET): stop with the reason when there is no usable Docker.
define need-docker
	@command -v $(DOCKER) >/dev/null 2>&1 || { echo "make $(1): '$(DOCKER)' is not on PATH. This target needs a container engine (Docker, or DOCKER=podman). Without one, 'make dev' runs corral from host images instead." >&2; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { echo "make $(1): '$(DOCKER)' is installed but its engine does not answer ('$(DOCKER) info' fails): start the Docker daemon, or check that you may use it." >&2; exit 1; }
endef

.PHONY: images
images: ## Build the worker and operator images from worker-image/Dockerfile (needs Docker; IMAGE_TAG=...)
	$(call need-docker,images)
	@set -e; for target in worker operator; do \
	  image="$(IMAGE_REGISTRY)/corral-$$target:$(IMAGE_TAG)"; \
	  echo "building $$image (target $$target)"; \
	  $(DOCKER) build -f worker-image/Dockerfile --target $$target -t "$$image" \
	    --build-arg VERSION=$(IMAGE_TAG) \
	    --build-arg REVISION="$$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
	    --build-arg CREATED="$$(date -u +%Y-%m-%dT%H:%M:%SZ)" . ; \
	done
	@echo "built $(WORKER_IMAGE) and $(OPERATOR_IMAGE)"
# --- end images ---

# --- the kind path (issue 9): corral on a kind cluster, for users with Docker ---
# Not run on the CI machine (it has no Docker engine); each target stops with the
# reason when docker, kind, kubectl or helm is missing. README: "With Docker: kind".
KIND            ?= kind
KIND_CLUSTER    ?= corral
KIND_KUBECONFIG ?= $(CURDIR)/.kind/kubeconfig
K8S_BIN         := $(CORRAL_CACHE)/k8s-v$(K8S_VERSION)/bin
# Your kubectl and helm, else the ones `make cluster-bins` built.
KUBECTL         ?= $(shell command -v kubectl 2>/dev/null || echo $(K8S_BIN)/kubectl)
HELM            ?= $(shell command -v helm 2>/dev/null || echo $(K8S_BIN)/helm)

define need-kind
	$(call need-docker,$(1))
	@command -v $(KIND) >/dev/null 2>&1 || { echo "make $(1): '$(KIND)' is not on PATH: install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)." >&2; exit 1; }
endef

define need-kind-cluster
	@test -s $(KIND_KUBECONFIG) || { echo "make $(1): no kubeconfig at $(KIND_KUBECONFIG): run 'make kind-up' first." >&2; exit 1; }
	@for tool in $(KUBECTL) $(HELM); do command -v $$tool >/dev/null 2>&1 || { echo "make $(1): $$tool not found: install kubectl and helm, or run 'make cluster-bins' (builds both into $(K8S_BIN))." >&2; exit 1; }; done
endef

.PHONY: kind-up
kind-up: ## Create a kind cluster named corral (KIND_CLUSTER=...); its kubeconfig goes to .kind/kubeconfig
	$(call need-kind,kind-up)
	@mkdir -p $(dir $(KIND_KUBECONFIG))
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo "kind cluster $(KIND_CLUSTER) is already up"; \
	  $(KIND) export kubeconfig --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG); \
	else \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG) --wait 120s; \
	fi
	@echo "next: make images kind-load deploy    (and: export KUBECONFIG=$(KIND_KUBECONFIG))"

.PHONY: kind-load
kind-load: ## Load the images `make images` built into the kind cluster
	$(call need-kind,kind-load)
	$(KIND) load docker-image --name $(KIND_CLUSTER) $(WORKER_IMAGE) $(OPERATOR_IMAGE)

# The operator's URL and the workers' (a worker role, never the operator's own)
# come from the Secrets of examples/kind/postgres.yaml; migrate.yaml creates
# the worker role. The example pool lives in `default`: Secrets and pods there.
.PHONY: deploy
deploy: ## Install corral on the kind cluster: a throwaway PostgreSQL (NOT for production), its tables and worker role, the chart with the local images
	$(call need-kind-cluster,deploy)
	@set -e; export KUBECONFIG=$(KIND_KUBECONFIG); \
	$(KUBECTL) apply -f examples/kind/postgres.yaml; \
	$(KUBECTL) -n corral-system rollout status deployment/postgres-throwaway --timeout=180s; \
	$(KUBECTL) -n corral-system delete job corral-migrate --ignore-not-found; \
	sed 's|CORRAL_OPERATOR_IMAGE|$(OPERATOR_IMAGE)|' examples/kind/migrate.yaml | $(KUBECTL) apply -f -; \
	$(KUBECTL) -n corral-system wait --for=condition=complete job/corral-migrate --timeout=180s; \
	$(KUBECTL) apply --server-side --force-conflicts -f charts/corral/crds/; \
	$(HELM) upgrade --install corral charts/corral --namespace corral-system \
	  --set image.repository=$(IMAGE_REGISTRY)/corral-operator --set image.tag=$(IMAGE_TAG) \
	  --set workerImage.repository=$(IMAGE_REGISTRY)/corral-worker --set workerImage.tag=$(IMAGE_TAG) \
	  --set database.secretName=postgres-throwaway --set database.secretKey=url \
	  --set workerDatabase.secretName=corral-worker-database --set workerDatabase.secretKey=url \
	  --set 'rbac.poolNamespaces={default}' --set 'watch.namespaces={default}' \
	  --wait --timeout 5m
	@echo "next: KUBECONFIG=$(KIND_KUBECONFIG) kubectl apply -f examples/workerpool.yaml && make kind-test-e2e"

.PHONY: kind-test-e2e
kind-test-e2e: venv cluster-bins promtool monitoring-crds ## The e2e tier against the kind cluster, without the tests that need the local node agent
	$(call need-kind-cluster,kind-test-e2e)
	CORRAL_E2E_KUBECONFIG=$(KIND_KUBECONFIG) PYTEST_ADDOPTS='-m "not local_platform"' $(PY) -m tests.tiers e2e

.PHONY: kind-down
kind-down: ## Delete the kind cluster make kind-up created
	$(call need-kind,kind-down)
	$(KIND) delete cluster --name $(KIND_CLUSTER)
	rm -f $(KIND_KUBECONFIG)
# --- end kind path ---
