# Modelship: the two commands are `make demo` and `make test`; everything else is a building block.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all venv deps lint typecheck imports unit integration e2e test test-fast generate crds docs \
        cluster-up cluster-down demo bench clean

all: test

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PYTHON) e2e/stack/progress.py pip "pip (upgrade)" -- $(PY) -m pip install --upgrade pip
	@$(PYTHON) e2e/stack/progress.py python-packages "python packages (.venv)" -- $(PY) -m pip install -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# System packages the local stack needs (Debian, root). Skipped when already present.
deps:
	@bash e2e/stack/install-deps.sh

lint: venv
	$(VENV)/bin/ruff check operator tests e2e bench

typecheck: venv
	$(VENV)/bin/mypy

imports: venv
	$(VENV)/bin/lint-imports

generate: venv
	$(VENV)/bin/modelship crds > crds/modeldeployments.yaml
	$(VENV)/bin/modelship docs > docs/api-reference.md
	cp crds/modeldeployments.yaml charts/modelship/crds/modeldeployments.yaml
	$(VENV)/bin/modelship policy > crds/requester-policy.yaml
	{ echo '{{- if .Values.requesterPolicy.enabled }}'; cat crds/requester-policy.yaml; echo '{{- end }}'; } > charts/modelship/templates/requester-policy.yaml
	$(VENV)/bin/modelship comparator-role > crds/comparator-clusterrole.yaml

unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# --- local stack (e2e/stack): real kube-apiserver, etcd, controller manager, scheduler, kwok, Prometheus, Triton
cluster-up: venv deps
	$(PY) -m e2e.stack up

cluster-down: venv
	$(PY) -m e2e.stack down

integration: venv
	$(PY) -m pytest -m integration tests $(PYTEST_ARGS)

e2e: venv
	$(PY) -m pytest e2e $(PYTEST_ARGS)

# The whole suite: static checks, then every test against the real local stack.
# pytest's exit code 5 (no tests collected) fails the target like any other non-zero code.
test: lint typecheck imports cluster-up
	$(PY) -m pytest tests e2e --durations=25 $(PYTEST_ARGS)

test-fast: lint typecheck imports unit

demo: venv deps
	$(PY) -m e2e.demo

bench: venv
	$(PY) -m bench

clean: cluster-down
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
