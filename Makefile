# One entry point for people and CI: every target works from a fresh clone.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup tools browser run test pytest lint typecheck format bench lock train clean

setup: $(STAMP)

# The locks hold lines only for the platforms they were resolved for (pyproject.toml [tool.uv] environments);
# elsewhere pip would install nothing from them and succeed, so say so before installing.
define PLATFORM_CHECK
import platform, sys
here = (sys.platform, platform.machine())
locked = {("linux", "x86_64"): "Linux x86_64", ("linux", "aarch64"): "Linux aarch64", ("darwin", "arm64"): "macOS arm64"}
if here not in locked:
    sys.exit(f"make setup: the locks cover {', '.join(locked.values())} (CPython 3.10), not {here[0]} {here[1]}: "
             "add the platform to pyproject.toml [tool.uv] environments and run `make lock`, or use the Docker image")
endef
export PLATFORM_CHECK

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml scripts/find-python310
	@py=$$(scripts/find-python310) || exit 1; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))'; then \
	  echo "==> creating $(VENV) with $$py"; rm -rf $(VENV); "$$py" -m venv $(VENV) || exit 1; \
	fi
	@$(PY) -c "$$PLATFORM_CHECK"
	@echo "==> installing pinned dependencies from requirements.lock + requirements-dev.lock (first time: ~2 min)"
	$(PY) -m pip install --quiet --upgrade "pip==24.2"
	$(PY) -m pip install --quiet --progress-bar off --require-hashes -r requirements.lock -r requirements-dev.lock
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

# Regenerate the hashed locks after editing a requirements*.in (needs `uv`; scripts/lock says how to get it):
# one universal resolution per lock for the platforms in pyproject.toml [tool.uv] environments, keeping the
# pins already there. `make lock ARGS="--upgrade-package NAME"` moves one package.
lock:
	scripts/lock $(ARGS)

clean:
	rm -rf $(VENV) .venv-tools .cache .pytest_cache .mypy_cache .ruff_cache
