# One entry point for people and CI: every target works from a fresh clone.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup tools run test pytest lint typecheck format bench lock train clean

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

run: setup
	$(PY) -m gateway serve $(ARGS)

train: setup
	$(PY) -m gateway train all

test: setup lint typecheck pytest

pytest: setup tools
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
