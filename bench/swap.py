"""Benchmark (not a test): latency and errors before, during and after a hot model swap under steady load.

Starts a private redis-server, a moto S3 server and one real gateway process (Redis + S3 mode), drives
steady webhook traffic at it, announces a new English model, and reports per phase p50/p99/max latency and
errors, plus the time from the announcement to the first answer by the new model. Run it briefly:

    python -m bench.swap                       # light bots, ~25 s
    python -m bench.swap --config config.prod.yml --seconds 20   # DIET/TED (trains two models first: slow)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from gateway.settings import ROOT, load_settings
from gateway.storage.active_models import RedisActiveModels
from gateway.storage.events import RedisEventBus, announce
from gateway.storage.model_store import ModelRef, sha256_file
from gateway.storage.redis_client import make_client
from gateway.storage.s3_model_store import S3ModelStore
from gateway.training import train_bot
from tests.support import GatewayProcess, RedisServer, S3Server, builder_request, free_port, train_variant

NEW_GREETING = "Benchmark: the new English model is answering."


@dataclass
class Sample:
    started: float
    seconds: float
    ok: bool
    new_model: bool


@dataclass
class Load:
    samples: list[Sample] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def user(http: aiohttp.ClientSession, url: str, load: Load, pause: float) -> None:
    """One simulated user: a greeting per request, new conversation each time."""
    while not load.stop.is_set():
        started = time.perf_counter()
        ok, new = False, False
        try:
            body = builder_request("hello", "en-US", f"bench-{uuid.uuid4().hex}")
            async with http.post(url + "/webhook/google", json=body) as resp:
                answer = await resp.json()
                speech = answer.get("prompt", {}).get("firstSimple", {}).get("speech", "")
                ok = resp.status == 200 and "unavailable" not in speech and "too long" not in speech
                new = speech == NEW_GREETING
        except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError):
            ok = False
        load.samples.append(Sample(started, time.perf_counter() - started, ok, new))
        if pause:
            await asyncio.sleep(pause)


def stats(samples: list[Sample]) -> dict[str, float | int | None]:
    """Requests, p50/p99/max latency (ms) and errors of one phase."""
    lat = sorted(s.seconds * 1000 for s in samples)
    if not lat:
        return {"requests": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "errors": 0}
    return {
        "requests": len(lat),
        "p50_ms": round(statistics.median(lat), 1),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
        "max_ms": round(lat[-1], 1),
        "errors": sum(not s.ok for s in samples),
    }


def summary(name: str, samples: list[Sample]) -> str:
    if not samples:
        return f"{name:>8}: no requests"
    phase = stats(samples)
    return (
        f"{name:>8}: {phase['requests']:5d} requests  p50 {phase['p50_ms']:7.1f} ms  "
        f"p99 {phase['p99_ms']:7.1f} ms  max {phase['max_ms']:7.1f} ms  errors {phase['errors']}"
    )


def models(config: str) -> tuple[Path, Path]:
    cache = Path(os.environ.get("GATEWAY_MODEL_CACHE", ROOT / ".cache" / "models"))
    folder = cache if config == "config.yml" else cache / "prod"
    print(f"models: training unless cached in {folder} ...", flush=True)
    v1 = train_bot("en", ROOT / "bots" / "en", folder / "en", config_name=config).path
    v2 = train_variant("en", "utter_greet", NEW_GREETING, cache, config_name=config)
    return v1, v2


async def run(args: argparse.Namespace) -> int:
    v1, v2 = models(args.config)
    cache = Path(os.environ.get("GATEWAY_MODEL_CACHE", ROOT / ".cache" / "models"))
    redis_server, s3 = RedisServer().start(), S3Server().start()
    project = f"bench{uuid.uuid4().hex[:6]}"
    try:
        settings = load_settings(
            overrides={"project": project, "redis.url": redis_server.url, **s3.overrides()}
        )
        store = S3ModelStore(settings)
        for path in (v1, v2):
            await store.put("en", path)
        await store.close()
        redis = make_client(redis_server.url, 2.0)
        active = RedisActiveModels(redis, settings)
        await active.activate("en", ModelRef(v1.name, sha256_file(v1)))
        env = {
            "GATEWAY_PROJECT": project,
            "GATEWAY_REDIS_URL": redis_server.url,
            "GATEWAY_BOTS_MODELS_DIR": str(cache),
            "GATEWAY_BOTS_TRAIN_MISSING": "false",
            "GATEWAY_MONITOR_INTERVAL_SECONDS": "0",
            "GATEWAY_LOGGING_LEVEL": "WARNING",
            **s3.env(),
        }
        with GatewayProcess.start(free_port(), env) as gw:
            await asyncio.sleep(1.0)  # let the subscription settle after readiness
            load = Load()
            connector = aiohttp.TCPConnector(limit=args.users)
            async with aiohttp.ClientSession(connector=connector) as http:
                users = [asyncio.create_task(user(http, gw.url, load, args.pause)) for _ in range(args.users)]
                await asyncio.sleep(args.seconds / 2)
                published = time.perf_counter()
                publisher = RedisEventBus(redis, settings, active, [])
                await announce(publisher, active, "en", ModelRef(v2.name, sha256_file(v2)))
                first_new = await _first_new(load, published, timeout=120)
                await asyncio.sleep(args.seconds / 2)
                load.stop.set()
                await asyncio.gather(*users)
        await redis.close(close_connection_pool=True)
    finally:
        s3.stop()
        redis_server.stop()
    swapped = first_new if first_new is not None else float("inf")
    before = [s for s in load.samples if s.started < published]
    during = [s for s in load.samples if published <= s.started < swapped + 1.0]
    after = [s for s in load.samples if s.started >= swapped + 1.0]
    print(f"\nbot en ({args.config}), {args.users} concurrent users, {len(load.samples)} requests")
    for name, part in (("before", before), ("during", during), ("after", after)):
        print(summary(name, part))
    if first_new is not None:
        print(f"event -> first answer by the new model: {(first_new - published) * 1000:.0f} ms")
        print("(during = from the announcement until 1 s after the first new answer)")
    if args.samples:
        _write_samples(Path(args.samples), load.samples, published)
    if args.json:
        phases = {"before": stats(before), "during": stats(during), "after": stats(after)}
        found = {
            "config": args.config,
            "users": args.users,
            "first_new_seconds": None if first_new is None else round(first_new - published, 2),
            "errors": sum(not s.ok for s in load.samples),
            **phases,
        }
        _write_json(Path(args.json), found)
    if first_new is None:
        print("the new model never answered")
        return 1
    return 0 if all(s.ok for s in load.samples) else 1


def _write_json(path: Path, found: dict[str, object]) -> None:
    path.write_text(json.dumps(found, indent=1))


def _write_samples(path: Path, samples: list[Sample], published: float) -> None:
    """Every request as JSON lines, times relative to the announcement (to see where a tail comes from)."""
    with path.open("w") as out:
        for s in sorted(samples, key=lambda s: s.started):
            row = {"at": round(s.started - published, 4), "ms": round(s.seconds * 1000, 1), "ok": s.ok}
            out.write(json.dumps({**row, "new": s.new_model}) + "\n")
    print(f"samples: {path}")


async def _first_new(load: Load, since: float, timeout: float) -> float | None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        done = [s.started + s.seconds for s in load.samples if s.new_model]
        if done:
            return min(done)
        await asyncio.sleep(0.01)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.swap", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="steady load before + after the swap")
    parser.add_argument("--users", type=int, default=8, help="concurrent simulated users")
    parser.add_argument("--pause", type=float, default=0.0, help="think time between a user's requests")
    parser.add_argument("--config", default="config.yml", help="bot config: config.yml or config.prod.yml")
    parser.add_argument("--samples", help="write every request (time, latency, model) as JSON lines here")
    parser.add_argument("--json", help="write the phases' numbers and the time to the new model here")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
