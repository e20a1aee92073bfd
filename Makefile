# One entry point for people and CI: every target works from a fresh clone.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup tools browser run test pytest lint typecheck format bench lock train clean

setup: $(STAMP)

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml scripts/find-python310
	@py=$$(scripts/find-python310) || exit 1; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))'; then \
	  echo "==> creating $(VENV) with $$py"; rm -rf $(VENV); "$$py" -m venv $(VENV) || exit 1; \
	fi
	@echo "==> installing pinned dependencies from requirements.lock + requirements-dev.lock (first time: ~2 min)"
	$(PY) -m pip install --quiet --upgrade "pip==24.2"
	$(PY) -m pip install --quiet --progress-bar off -r requirements.lock -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m gateway.agents.trusted_types
	@touch $(STAMP)

# The deployment-file checkers' own virtualenv (.venv-tools; Rasa's pins hold them back in .venv).
tools:
	@scripts/dev-tools >/dev/null

# The console's browser tests drive the system's Chromium (Playwright's own download is not needed).
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; then \
	  echo "==> Chromium found: $$(command -v chromium || command -v chromium-browser || command -v google-chrome)"; \
	elif command -v apt-get >/dev/null; then \
	  echo "==> installing Chromium with apt-get (Debian/Ubuntu)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y chromium || { \
	    $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update && $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y chromium; }; \
	else \
	  echo "make browser: install Chromium or Google Chrome and put it on PATH (e.g. brew install --cask chromium," \
	       "dnf install chromium, pacman -S chromium); the browser tests look for chromium, chromium-browser or google-chrome" >&2; \
	  exit 1; \
	fi

run: setup
	$(PY) -m gateway serve --local-console $(ARGS)

train: setup
	$(PY) -m gateway train all

test: setup lint typecheck pytest

pytest: setup tools browser
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check gateway tests bench
	$(VENV)/bin/ruff format --check gateway tests bench

format: setup
	$(VENV)/bin/ruff format gateway tests bench
	$(VENV)/bin/ruff check --fix gateway tests bench

typecheck: setup
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m bench $(ARGS)

# Regenerate the pinned locks after editing requirements.in or requirements-dev.in (needs `uv`, fast and
# reproducible): the runtime lock (the Docker image) first, then the tools constrained by it.
lock:
	uv pip compile requirements.in --python-version 3.10 --python-platform x86_64-manylinux_2_28 -o requirements.lock
	uv pip compile requirements-dev.in --python-version 3.10 --python-platform x86_64-manylinux_2_28 -o requirements-dev.lock

clean:
	rm -rf $(VENV) .venv-tools .cache .pytest_cache .mypy_cache .ruff_cache
