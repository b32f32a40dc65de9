# The two commands of the README: `make run` and `make test` (as root on Debian 12).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help run test test-compose bench-peers lint format system-deps test-deps

help:
	@echo "make run    set up and start Contained on http://$(HOST):$(PORT)/ (HOST=, PORT= to change)"
	@echo "make test   install what the tests need, then run ruff and the whole test suite"
	@echo "make test-compose  build the docker compose stack with no network and test it end to end"
	@echo "make bench-peers  install terminado and wetty under bench/peers/ for bench/terminal_peers.py"
	@echo "make format reformat the code with ruff"

# Debug is on for the local lab only; set CONTAINED_DEBUG=0 on the command line to try production.
run: export CONTAINED_DEBUG = 1
run: system-deps $(VENV)/.installed-run
	@$(PY) manage.py migrate --noinput -v 0
	@$(PY) manage.py collectstatic --noinput -v 0
	@$(PY) manage.py lessons load
	@$(PY) manage.py ensure_instructor
	@HOST=$(HOST) PORT=$(PORT) exec $(PY) manage.py runlab

test: test-deps $(VENV)/.installed-dev lint
	@scripts/test-services.sh $(VENV)/bin/pytest

# Installs Docker from Debian, makes a local base image and wheels, then builds, starts, tests
# and removes the compose stack (tests/compose).
test-compose: $(VENV)/.installed-dev
	@scripts/compose-prepare.sh
	@CONTAINED_COMPOSE_TEST=1 $(VENV)/bin/pytest tests/compose

bench-peers: $(VENV)/.installed-dev
	@PYTHON=$(PYTHON) bench/peers/install.sh

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

system-deps:
	@scripts/install-system-deps.sh

test-deps: system-deps
	@scripts/install-test-deps.sh

$(PY): | system-deps
	$(PYTHON) -m venv $(VENV)

# Stamps: pip runs again only when a requirements file is newer than the last install.
$(VENV)/.installed-run: requirements.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $@ $(VENV)/.installed-run
