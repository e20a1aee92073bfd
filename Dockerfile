# syntax=docker/dockerfile:1
# The Rasa gateway: one asyncio process (aiohttp + uvloop) answering Google Assistant webhooks with
# an in-process pool of Rasa 3.6 bots. Needs BuildKit (the default since Docker 23): unused stages
# are skipped, so models/ has to exist only when it is baked in.
#
#   docker build -t rasa-gateway .                            models pulled from the model store at start
#   docker build --build-arg MODELS=baked -t rasa-gateway .   models/ (from `gateway train all`) baked in
#   docker build --target ci -t rasa-gateway-ci .             adds git, for `gateway pipeline` in bot repos
#
#   docker run -p 8080:8080 -e GATEWAY_REDIS_URL=redis://redis:6379/0 rasa-gateway
#
# Reproducible builds pin the base image by digest (look it up where you build, e.g.
# `docker buildx imagetools inspect python:3.10-slim`; none is written here):
#   docker build --build-arg PYTHON_IMAGE=python:3.10-slim@sha256:<digest> -t rasa-gateway .

# store | baked
ARG MODELS=store
# Python 3.10: Rasa 3.6 needs <3.11 (README "Python 3.10 end of life").
ARG PYTHON_IMAGE=python:3.10-slim

# ---- dependencies: rebuilt only when requirements.lock changes --------------------------------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Compilers for the few sdists in the lock; this stage is not part of the final image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.lock /tmp/requirements.lock
# The runtime lock only (test, lint and bench tools are in requirements-dev.lock, never here); CI tests
# the same runtime versions. uvloop is in it and used by `gateway serve`. Every file is checked against the
# lock's sha256 (--require-hashes); the lock has lines for linux/amd64 and linux/arm64 builds alike.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install "pip==24.2" \
    && /opt/venv/bin/pip install --require-hashes -r /tmp/requirements.lock

# ---- models: an empty folder (pulled from the store at start) or the local models/ --------------
FROM ${PYTHON_IMAGE} AS models-store
RUN mkdir /models

FROM ${PYTHON_IMAGE} AS models-baked
COPY models/ /models/

FROM models-${MODELS} AS models

# ---- the application ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS app
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PATH=/opt/venv/bin:$PATH \
    TF_CPP_MIN_LOG_LEVEL=2 \
    RASA_TELEMETRY_ENABLED=false \
    MPLCONFIGDIR=/tmp/matplotlib \
    GATEWAY_BOTS_TRAIN_MISSING=false
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /home/gateway --create-home gateway
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY pyproject.toml ./
COPY config/ config/
COPY gateway/ gateway/
# The bots' endpoints.yml and custom actions run in this process (README "Bringing your Rasa project").
COPY bots/ bots/
# skops' trusted-type lists, computed once here instead of at every start (gateway/agents/trusted_types.py).
RUN python -m gateway.agents.trusted_types
# Writable by the gateway: the model store downloads into it.
COPY --from=models --chown=10001:10001 /models/ models/
USER 10001:10001
EXPOSE 8080
# slim has no curl: probe /healthz with the standard library.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('GATEWAY_SERVER_PORT', '8080'); sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:' + port + '/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["python", "-m", "gateway"]
CMD ["serve", "--no-train"]

# ---- CI image for bot repositories: `gateway train|test|pipeline` need git -------------------------
FROM app AS ci
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*'
# CI runners mount the checkout owned by their own uid; a throwaway CI container runs as root.
CMD ["pipeline"]

# ---- default target: the server ------------------------------------------------------------------
FROM app AS runtime
USER 10001:10001
CMD ["serve", "--no-train"]
