"""Releasing models through the real commands (`python -m gateway publish|models|activate|rollback|promote|
pipeline` in subprocesses) against a real redis-server, moto's S3 server and running gateways.

One production and one staging gateway serve the whole module (same Redis, same S3, same project);
the tests run in file order and each asserts from the state the previous one left.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from gateway.delivery.records import EvaluationRecord, StoryResult, read_record, sha256_file, write_record
from gateway.settings import ROOT
from gateway.training import current_model
from tests.conftest import model_cache
from tests.support import (
    GatewayProcess,
    RedisServer,
    S3Server,
    builder_request,
    free_port,
    post_json,
    responses,
    train_variant,
)
from tests.swaps.conftest import NEW_GREETING
from tests.test_delivery import bot_repo, copy_model, gateway, git

NEW_POLISH_GREETING = "Witamy w nowym polskim modelu!"


@dataclass
class World:
    """Redis + S3 + a project name shared by the module's gateways and commands."""

    redis: RedisServer
    s3: S3Server
    project: str
    production: GatewayProcess | None = None
    staging: GatewayProcess | None = None

    def env(self, environment: str = "production", **extra: str) -> dict[str, str]:
        return {
            **self.s3.env(),
            "GATEWAY_REDIS_URL": self.redis.url,
            "GATEWAY_PROJECT": self.project,
            "GATEWAY_ENVIRONMENT": environment,
            "GATEWAY_DELIVERY_NLU_FOLDS": "0",  # the NLU gate has its own tests (test_delivery.py)
            **extra,
        }


@pytest.fixture(scope="module")
def world(s3_server: S3Server, models_dir: Path) -> Iterator[World]:
    redis = RedisServer().start()
    w = World(redis, s3_server, f"rel{uuid.uuid4().hex[:8]}")
    gateway_env = {"GATEWAY_BOTS_MODELS_DIR": str(models_dir), "GATEWAY_BOTS_TRAIN_MISSING": "false"}
    gateway_env["GATEWAY_MONITOR_INTERVAL_SECONDS"] = "0"
    try:
        with (
            GatewayProcess.start(free_port(), w.env("production", **gateway_env)) as production,
            GatewayProcess.start(free_port(), w.env("staging", **gateway_env)) as staging,
        ):
            w.production, w.staging = production, staging
            yield w
    finally:
        redis.stop()


def speech(gw: GatewayProcess | None, text: str, locale: str) -> str:
    assert gw is not None
    status, body = post_json(f"{gw.url}/webhook/google", builder_request(text, locale))
    assert status == 200, body
    return str(body["prompt"]["firstSimple"]["speech"])


def answers(
    gw: GatewayProcess | None, text: str, locale: str, expected: set[str], timeout: float = 120
) -> str:
    """Poll until the gateway's answer is one of `expected` (the bound only stops a broken test)."""
    deadline = time.monotonic() + timeout
    while True:
        said = speech(gw, text, locale)
        if said in expected or time.monotonic() > deadline:
            assert said in expected, f"{said!r} not in {expected}"
            return said
        time.sleep(0.2)


def answering_model(gw: GatewayProcess | None, lang: str) -> str:
    assert gw is not None
    import json
    import urllib.request

    with urllib.request.urlopen(f"{gw.url}/bots", timeout=10) as resp:
        bots = {bot["lang"]: bot for bot in json.loads(resp.read())["bots"]}
    return str(bots[lang]["model"])


def ok(*args: str, env: dict[str, str]) -> str:
    done = gateway(*args, env=env)
    assert done.returncode == 0, f"gateway {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


OLD_EN = set(responses("en", "utter_greet"))


@pytest.fixture(scope="module")
def v2() -> Path:
    """An English model that greets with NEW_GREETING (the swap tests' variant, from the model cache)."""
    return train_variant("en", "utter_greet", NEW_GREETING, model_cache())


def copy_en(model: Path, models: Path) -> Path:
    """A private copy of an English model in models/en/ (the variant's cache folder is not named en)."""
    target = models / "en" / model.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model, target)
    return target


def variant_bots(tmp_path: Path) -> Path:
    """bots/en with the variant greeting and its tests: the sources `v2` was trained from."""
    bots = tmp_path / "bots"
    shutil.copytree(ROOT / "bots" / "en", bots / "en", ignore=shutil.ignore_patterns("results"))
    domain_file = bots / "en" / "domain.yml"
    domain = yaml.safe_load(domain_file.read_text(encoding="utf-8"))
    domain["responses"]["utter_greet"] = [{"text": NEW_GREETING}]
    domain_file.write_text(yaml.safe_dump(domain, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return bots


def test_publish_refuses_untested_and_failed_models_unless_forced(
    world: World, v2: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    model = copy_en(v2, models)
    env = world.env(GATEWAY_PROJECT=f"gate{uuid.uuid4().hex[:8]}", GATEWAY_BOTS_MODELS_DIR=str(models))

    untested = gateway("publish", "en", model.name, env=env)
    assert untested.returncode == 1
    assert "was never tested: run `gateway test en` first (or use --force)" in untested.stderr
    failed = EvaluationRecord(
        lang="en",
        model=model.name,
        sha256=sha256_file(model),
        passed=False,
        failures=("1/9 stories failed: ask for help",),
        tested_at="2024-06-01T00:00:00Z",
        min_intent_accuracy=0.75,
        min_intent_f1=0.0,
        stories=StoryResult(total=9, failed=("ask for help",), action_accuracy=0.9),
        nlu=None,
    )
    write_record(failed, model)
    refused = gateway("publish", "en", str(model), env=env)
    assert refused.returncode == 1
    assert "failed its tests: 1/9 stories failed: ask for help" in refused.stderr
    assert "none yet" in ok("models", "en", env=env)  # nothing was uploaded

    forced = ok("publish", "en", str(model), "--force", env=env)
    assert "published without a passing test record (--force)" in forced
    listing = ok("models", "en", env=env)
    assert f"* {model.name}" in listing and sha256_file(model) in listing


def test_train_test_publish_activate_rollback_switch_a_running_gateway(
    world: World, v2: Path, model_paths: dict[str, Path], tmp_path: Path
) -> None:
    bots = variant_bots(tmp_path)
    models = tmp_path / "models"
    copy_en(v2, models)
    env = world.env(GATEWAY_BOTS_DIR=str(bots), GATEWAY_BOTS_MODELS_DIR=str(models))
    v1 = copy_model(model_paths["en"], tmp_path / "v1")
    assert answers(world.production, "hello", "en-US", OLD_EN) in OLD_EN
    # What production ran so far, published earlier (so there is something to roll back to).
    ok("publish", "en", str(v1), "--force", env=env)

    ok("train", "en", env=env)
    model = current_model(bots / "en", models / "en")  # the variant's sources: the cached v2 (or retrained)
    assert model is not None
    tested = ok("test", "en", env=env)
    assert "PASSED" in tested
    published = ok("publish", "en", env=env)
    assert f"{model.name} is active in production" in published
    assert f"announced on {world.project}-en" in published
    answers(world.production, "hello", "en-US", {NEW_GREETING})
    assert answering_model(world.production, "en") == model.name
    listing = ok("models", "en", env=env)
    assert f"* {model.name}" in listing and f"  {v1.name}" in listing
    assert sha256_file(model) in listing

    assert f"rolled back to {v1.name}" in ok("rollback", "en", env=env)
    answers(world.production, "hello", "en-US", OLD_EN)
    ok("activate", "en", model.name, env=env)
    answers(world.production, "hello", "en-US", {NEW_GREETING})
    ok("rollback", "en", env=env)
    answers(world.production, "hello", "en-US", OLD_EN)
    # The staging gateway never saw any of it.
    assert speech(world.staging, "hello", "en-US") in OLD_EN


def test_promote_staging_to_production(world: World, v2: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    bots = variant_bots(tmp_path)
    model = copy_en(v2, models)
    staging = world.env("staging", GATEWAY_BOTS_DIR=str(bots), GATEWAY_BOTS_MODELS_DIR=str(models))
    ok("test", "en", "--model", str(model), env=staging)
    assert read_record(model) is not None

    published = ok("publish", "en", str(model), env=staging)
    assert f"announced on {world.project}-staging-en" in published
    answers(world.staging, "hello", "en-US", {NEW_GREETING})
    # A staging-only publish does not reach production (its store, record and channel are separate).
    assert speech(world.production, "hello", "en-US") in OLD_EN
    assert model.name in ok("models", "en", env=world.env("staging"))

    promoted = ok("promote", "en", "--from", "staging", "--to", "production", env=world.env())
    assert f"promoted {model.name}" in promoted
    answers(world.production, "hello", "en-US", {NEW_GREETING})
    listing = ok("models", "en", env=world.env())
    assert f"* {model.name}" in listing and sha256_file(model) in listing


def test_pipeline_publishes_only_the_changed_polish_bot_to_a_running_gateway(
    world: World, tmp_path: Path
) -> None:
    """The issue's "done when": only bots/pl changed -> only Polish is trained, tested, published, and a
    running gateway answers with the new Polish model without a restart."""
    repo = bot_repo(tmp_path)
    domain_file = repo / "bots" / "pl" / "domain.yml"
    domain = yaml.safe_load(domain_file.read_text(encoding="utf-8"))
    domain["responses"]["utter_greet"] = [{"text": NEW_POLISH_GREETING}]
    domain_file.write_text(yaml.safe_dump(domain, allow_unicode=True, sort_keys=False), encoding="utf-8")
    git(repo, "commit", "-qam", "pl: new greeting")
    old_pl = set(responses("pl", "utter_greet"))
    assert speech(world.production, "cześć", "pl-PL") in old_pl
    en_before, de_before = answering_model(world.production, "en"), answering_model(world.production, "de")
    # Trained once per content hash, like every other test model.
    models = model_cache() / "release-pipeline"
    env = world.env(GATEWAY_BOTS_DIR=str(repo / "bots"), GATEWAY_BOTS_MODELS_DIR=str(models))

    out = ok("pipeline", "--since", "HEAD~1", env=env)
    assert "en: unchanged since HEAD~1" in out and "de: unchanged since HEAD~1" in out
    assert "pl: changed: pl/domain.yml" in out
    assert "== pl: publish" in out and "== en:" not in out and "== de:" not in out
    assert "pipeline: published pl in production" in out
    answers(world.production, "cześć", "pl-PL", {NEW_POLISH_GREETING})
    assert answering_model(world.production, "en") == en_before
    assert answering_model(world.production, "de") == de_before
    assert speech(world.staging, "cześć", "pl-PL") in old_pl


def test_a_failed_test_blocks_the_pipelines_publish(
    world: World, model_paths: dict[str, Path], tmp_path: Path
) -> None:
    from tests.test_delivery import break_story

    repo = bot_repo(tmp_path)
    break_story(repo / "bots", "de")
    models = tmp_path / "models"
    copy_model(model_paths["de"], models)
    env = world.env(
        GATEWAY_PROJECT=f"fail{uuid.uuid4().hex[:8]}",
        GATEWAY_BOTS_DIR=str(repo / "bots"),
        GATEWAY_BOTS_MODELS_DIR=str(models),
    )
    done = gateway("pipeline", "--since", "HEAD", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pipeline stopped at de (test): tests failed" in done.stderr
    assert "== de: publish" not in done.stdout
    assert "none yet" in ok("models", "de", env=env)


@pytest.mark.parametrize(
    ("args", "extra", "code", "message"),
    [
        (("publish", "xx"), {}, 2, "unknown language 'xx': configured are en, pl, de"),
        (("models", "fr"), {}, 2, "unknown language 'fr'"),
        (
            ("publish", "pl"),
            {"GATEWAY_BOTS_DIR": "{tmp}/nobots"},
            2,
            "bot folder {tmp}/nobots/pl does not exist",
        ),
        (("publish", "en", "nope.tar.gz"), {}, 2, "model nope.tar.gz not found: no such file, nor in"),
        (("activate", "en", "nope.tar.gz"), {}, 2, "model nope.tar.gz not found in s3://{project}-en/"),
        (
            ("models", "en"),
            {"GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0"},
            3,
            "Redis at redis://127.0.0.1:1/0 is unreachable",
        ),
        (
            ("models", "en"),
            {"GATEWAY_MODELS_S3_ENDPOINT_URL": "http://127.0.0.1:1"},
            3,
            "at http://127.0.0.1:1; check models.s3_endpoint_url",
        ),
        (("rollback", "de"), {}, 1, "nothing to roll back to: no de model was ever activated here"),
        (
            ("promote", "de"),
            {},
            1,
            "no active de model in staging: run `gateway --env staging publish de` first",
        ),
        (
            ("promote", "en", "--from", "staging", "--to", "staging"),
            {},
            2,
            "--from and --to are both staging",
        ),
        (
            ("publish", "en"),
            {"GATEWAY_REDIS_URL": ""},
            2,
            "releasing needs Redis (redis.url, GATEWAY_REDIS_URL)",
        ),
    ],
)
def test_clear_errors(
    world: World, args: tuple[str, ...], extra: dict[str, str], code: int, message: str, tmp_path: Path
) -> None:
    (tmp_path / "nobots").mkdir()
    project = f"err{uuid.uuid4().hex[:8]}"
    env = world.env(GATEWAY_PROJECT=project, GATEWAY_BOTS_MODELS_DIR=str(model_cache()))
    env.update({k: v.format(tmp=tmp_path) for k, v in extra.items()})
    done = gateway(*args, env=env)
    assert done.returncode == code, done.stdout + done.stderr
    assert message.format(tmp=tmp_path, project=project) in done.stderr
    assert "Traceback" not in done.stderr


def test_staging_and_production_never_share_buckets_channels_keys_or_folders() -> None:
    from gateway.errors import ConfigError
    from gateway.settings import load_settings
    from gateway.storage.redis_client import key

    prod = load_settings(overrides={"project": "shop"})
    staging = load_settings(overrides={"project": "shop", "environment": "staging"})
    assert (prod.bucket_for("pl"), prod.channel_for("pl")) == ("shop-pl", "shop-pl")  # the original names
    assert (staging.bucket_for("pl"), staging.channel_for("pl")) == ("shop-staging-pl", "shop-staging-pl")
    assert key(prod, "pl", "active") != key(staging, "pl", "active")
    assert staging.local_store_root == prod.local_store_root / "staging"
    explicit = load_settings(overrides={"environment": "staging", "models.bucket": "bots-{env}-{lang}"})
    assert explicit.bucket_for("en") == "bots-staging-en"
    with pytest.raises(ConfigError, match=r"models\.bucket='models-\{lang\}': allowed a template with"):
        load_settings(overrides={"models.bucket": "models-{lang}"})
