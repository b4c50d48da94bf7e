# gridgov — two commands for a newcomer on Debian 12 (as root, or a user with sudo):
#   make demo   install what is missing, load the demo city once, serve http://127.0.0.1:8000
#   make test   install what is missing, then lint, type-check and run the whole test suite
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
SCALE ?= demo
APT_PKGS := postgresql-15 postgresql-15-postgis-3 libpq-dev gcc python3-dev python3-venv \
            gdal-bin chromium fonts-wqy-microhei
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup apt lint bench clean

demo: setup
	$(BIN)/gridgov demo load --scale $(SCALE) --if-empty
	exec $(BIN)/gridgov serve

test: setup lint
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

setup: apt $(VENV)/.installed

# Debian packages: installed only when missing (apt-get update once, then one install).
apt:
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
	  | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

bench: setup
	@echo "see bench/README.md: each script prints its figures"

clean:
	rm -rf $(VENV) .gridgov .pytest_cache .mypy_cache .ruff_cache
