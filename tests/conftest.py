"""Shared fixtures: real trained models (cached by content hash), a real gateway process, real Redis."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.settings import ROOT, Settings, load_settings
from gateway.training import train_missing
from tests.redis_cluster import RedisClusterNodes
from tests.support import GatewayProcess, RedisServer, S3Server, free_port

LANGS = ("en", "pl", "de")


def model_cache() -> Path:
    """Where session models are trained once and reused while the bots' sources do not change."""
    return Path(os.environ.get("GATEWAY_MODEL_CACHE", ROOT / ".cache" / "models"))


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """Every bot trained (or found current) in the cache: models_dir/<lang>/<stamp>-<hash>.tar.gz."""
    cache = model_cache()
    bots = [(lang, ROOT / "bots" / lang) for lang in LANGS]
    train_missing(bots, cache, progress=lambda line: print(f"[models] {line}", file=sys.stderr))
    return cache


@pytest.fixture(scope="session")
def model_paths(models_dir: Path) -> dict[str, Path]:
    """The current model of each bot."""
    from gateway.training import current_model

    out = {}
    for lang in LANGS:
        path = current_model(ROOT / "bots" / lang, models_dir / lang)
        assert path is not None, f"no current model for {lang} in {models_dir}"
        out[lang] = path
    return out


@pytest.fixture(scope="session")
def prod_model_paths() -> dict[str, Path]:
    """Every bot's DIET/TED model (config.prod.yml), trained once into <cache>/prod like bench's models.

    The real pipeline and epochs: ~70 s per bot the first time, then reused while the sources do not change.
    """
    from gateway.training import current_model

    cache = model_cache() / "prod"
    bots = [(lang, ROOT / "bots" / lang) for lang in LANGS]
    progress = lambda line: print(f"[prod models] {line}", file=sys.stderr)  # noqa: E731
    train_missing(bots, cache, config_name="config.prod.yml", progress=progress)
    out = {}
    for lang, folder in bots:
        path = current_model(folder, cache / lang, "config.prod.yml")
        assert path is not None, f"no current config.prod.yml model for {lang} in {cache}"
        out[lang] = path
    return out


@pytest.fixture
def settings(models_dir: Path) -> Settings:
    """Embedded-default settings using the cached models."""
    return load_settings(overrides={"bots.models_dir": str(models_dir), "monitor.interval_seconds": 0})


@pytest.fixture(scope="session")
def gateway(models_dir: Path) -> Iterator[GatewayProcess]:
    """One real gateway process (embedded defaults) serving over HTTP for the whole session."""
    port = free_port()
    env = {"GATEWAY_BOTS_MODELS_DIR": str(models_dir), "GATEWAY_BOTS_TRAIN_MISSING": "false"}
    with GatewayProcess.start(port, env) as proc:
        yield proc


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh, private redis-server for one test (stop/restart it to inject faults)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def module_redis_server() -> Iterator[RedisServer]:
    """A private redis-server shared by one module's tests (e.g. behind one module-scoped gateway)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """One private Redis Cluster for the session: 3 primaries, each with a replica (for failovers).

    Tests that kill a node restart it before they end (it rejoins as a replica), so the next test
    finds a healthy cluster again.
    """
    cluster = RedisClusterNodes(masters=3, replicas_per_master=1).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto S3 server for the session (use a unique `project` per test for fresh buckets)."""
    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()
