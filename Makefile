# Development tasks. `make install` is idempotent: stamp files under .venv
# record finished steps, and a step runs again when its inputs change.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
VENV_BIN := $(VENV)/bin
HARNESS_DIR := tests/pyodide
PYODIDE_MANIFEST := $(HARNESS_DIR)/node_modules/pyodide/package.json

PYTHON_STAMP := $(VENV)/.stamp-python
NPM_STAMP := $(VENV)/.stamp-npm
PACKAGES_STAMP := $(VENV)/.stamp-packages
PACKAGE_INITS := $(sort $(wildcard kernel/*/__init__.py repl/*/__init__.py))
PACKAGES_RECORDED := $(shell cat $(PACKAGES_STAMP) 2>/dev/null)
PACKAGES_FORCE := $(if $(filter-out $(PACKAGES_RECORDED),$(PACKAGE_INITS))$(filter-out $(PACKAGE_INITS),$(PACKAGES_RECORDED)),FORCE)

# A missing node_modules tree forces the npm step, even when its stamp exists.
NPM_FORCE := $(if $(wildcard $(PYODIDE_MANIFEST)),,FORCE)

.PHONY: install test bench demo demo-headless lite lint clean FORCE

SYSTEM_STAMP := $(VENV)/.stamp-system

install: $(PYTHON_STAMP) $(NPM_STAMP) $(SYSTEM_STAMP)
	@echo "install: done ($(VENV), $(HARNESS_DIR)/node_modules, system packages)"

# System packages the tests need (graphviz's dot); the script is idempotent.
$(SYSTEM_STAMP): scripts/install_system_deps.sh | $(VENV_PYTHON)
	@echo "installing: system packages (scripts/install_system_deps.sh)"
	bash scripts/install_system_deps.sh
	@touch $@

$(VENV_PYTHON):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "error: $(PYTHON) is $$($(PYTHON) --version 2>&1), expected Python 3.11 or newer;" \
		     "pass another interpreter with make PYTHON=python3.11 install" >&2; exit 1; }
	@echo "installing: virtual environment $(VENV) ($$($(PYTHON) --version))"
	$(PYTHON) -m venv $(VENV)

# The editable install maps only the top-level packages that exist when it
# runs, so a change in that set (recorded in PACKAGES_STAMP) reruns it. An
# edited __init__.py does not.
$(PYTHON_STAMP): pyproject.toml $(PACKAGES_FORCE) | $(VENV_PYTHON)
	@echo "installing: latest pip"
	$(VENV_PYTHON) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@echo "installing: asyncmachine (editable) with the dev extras"
	$(VENV_PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@echo "$(PACKAGE_INITS)" > $(PACKAGES_STAMP)
	@touch $@

$(NPM_STAMP): $(HARNESS_DIR)/package.json $(HARNESS_DIR)/package-lock.json $(NPM_FORCE) | $(VENV_PYTHON)
	@command -v npm >/dev/null || { \
		echo "error: npm not found on PATH; install Node.js 18 or newer with npm" >&2; exit 1; }
	@echo "installing: npm package pyodide for the harness (node $$(node --version), npm $$(npm --version))"
	cd $(HARNESS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

FORCE:

test: install
	$(VENV_PYTHON) -m pytest -q

bench: install
	$(VENV_PYTHON) -m bench.core

# Serves server-foo and the offline bar page until Ctrl-C; open the printed URL.
demo: install
	$(VENV_BIN)/am-demo

# The whole demo scenario in headless Chromium; exits 0 when every step passed.
demo-headless: install
	$(VENV_BIN)/am-demo --headless

# The offline JupyterLite site, in build/lite; cached, rebuilt when inputs change.
lite: install
	$(VENV_PYTHON) -m asyncmachine.lite --out build/lite

# Runs all three tools and fails at the end if any of them failed.
lint: install
	status=0; \
	$(VENV_BIN)/ruff check . || status=1; \
	$(VENV_BIN)/ruff format --check . || status=1; \
	$(VENV_BIN)/mypy || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) $(HARNESS_DIR)/node_modules build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} +
