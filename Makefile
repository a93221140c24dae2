# Two commands on a fresh clone with Python 3.11: `make run` (install + serve the default model)
# and `make test` (install + lint + type-check + every test). Both create or reuse .venv.
# `make test-fast`: the same without the slow tests (containers, training, real server
# processes) and without installing system packages. `make up` / `make down`: the compose stack.
# `make clean` removes the venv and caches; `make clean-all` also what the tests leave outside it.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 0.0.0.0
PORT ?= 8000

.PHONY: run test test-fast install install-dev install-transformer services lint typecheck \
	pytest clean clean-all up down

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files re-run an install only when its requirements file changed.
# The runtime serves tfidf and onnx (as the default container image does); torch only comes with
# the dev install (tests) or `make install-transformer`.
$(VENV)/.runtime-installed: requirements.txt requirements-onnx.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-onnx.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt requirements-transformer.txt $(VENV)/.runtime-installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install-transformer: $(VENV)/.runtime-installed
	$(BIN)/pip install --quiet -r requirements-transformer.txt

install: $(VENV)/.runtime-installed
install-dev: $(VENV)/.dev-installed

run: install
	$(BIN)/ml-prod-api serve --host $(HOST) --port $(PORT)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src
	$(BIN)/bandit -q -c pyproject.toml -r src

typecheck: install-dev
	$(BIN)/mypy

services:
	./scripts/install_test_services.sh

pytest: install-dev services
	$(BIN)/pytest

test: lint typecheck pytest

test-fast: lint typecheck
	$(BIN)/pytest -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

clean-all:
	./scripts/clean_all.sh

# The compose stack (docker-compose.yml) with Docker Compose or podman-compose; GRAFANA=1 adds
# Grafana. scripts/stack.sh says what it waits for.
up:
	./scripts/stack.sh up

down:
	./scripts/stack.sh down

# podman-compose for `make up` where the machine has none: the version pinned for the tests.
$(VENV)/.compose-installed: requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c requirements.txt "$$(grep -m1 '^podman-compose==' requirements-dev.txt)"
	touch $@
