# The two commands: `make up` runs the system on its embedded defaults, `make test` passes the tests.
# Both install what they need first (virtualenv, pinned packages, broker jars, database).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := libs/platform libs/engagement libs/rivta libs/producer-sdk deploy bench services/index services/query services/consent services/audit simulator
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install browser k8s-tools up down status test lint types unit proto lock clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements/constraints.txt requirements/dev.txt $(addsuffix /pyproject.toml,$(PACKAGES))
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -r requirements/dev.txt \
		$(addprefix -e ,$(PACKAGES))
	@touch $@

install: $(STAMP) ## create .venv with every package pinned

# The browser tests drive Debian's Chromium (and its matching chromedriver) headless.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser: ## install chromium + chromium-driver for the browser tests when missing (apt)
	@command -v chromedriver >/dev/null && { command -v chromium >/dev/null || test -x /usr/lib/chromium/chromium; } \
		|| { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core; }

# Kustomize renders deploy/k8s in its test; built from its Go module, pinned, once per machine.
KUSTOMIZE_VERSION := v5.8.0
KUSTOMIZE := .npo/tools/kustomize-$(KUSTOMIZE_VERSION)/kustomize
$(KUSTOMIZE):
	GOBIN=$(abspath $(dir $(KUSTOMIZE))) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

k8s-tools: $(KUSTOMIZE) ## install kustomize (go install, pinned) for the Kubernetes test

up: $(STAMP) ## run the whole system on the embedded defaults (KAFKA_NODES=3: a replicated Kafka cluster)
	$(BIN)/npo up

down: $(STAMP) ## stop everything `make up` started (data stays)
	$(BIN)/npo down

status: $(STAMP) ## what infrastructure is running, and where
	$(BIN)/npo infra status

test: lint types browser k8s-tools ## lint, type-check, then every test (unit and integration, real broker and database)
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(STAMP) ## only the tests that need no broker or database
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .

types: $(STAMP) ## mypy --strict over every package
	$(BIN)/mypy libs/platform/src libs/engagement/src libs/rivta/src libs/producer-sdk/src deploy/src bench/src services/*/src simulator/src

proto: $(STAMP) ## regenerate the Python event contracts from proto/
	$(BIN)/python proto/generate.py

lock: $(STAMP) ## re-pin requirements/constraints.txt from the current virtualenv
	{ head -2 requirements/constraints.txt; $(BIN)/python -m pip freeze --exclude-editable; } > requirements/constraints.tmp
	mv requirements/constraints.tmp requirements/constraints.txt

clean: ## remove the virtualenv and caches (keeps .npo: broker jars, data, keys)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
