"""Benchmark (not a test): what a custom action adds to a turn, in process vs on an HTTP action server.

`make bench ARGS="--actions"` (or `python -m bench.actions`). Two real gateway processes in turn, the
English bot's actions first in process (its endpoints.yml), then on a real `python -m rasa_sdk` action
server on this machine (bots.languages.en.endpoints). Each sends the same conversation turns from
`--concurrency` users: "are you open right now?" (runs action_opening_status) and "when are you open?"
(the same kind of one-response turn without a custom action), alternating in the same conversations.
What the action adds is the latency of the first minus the second at p50 and p99, per mode; the report gives
in-process / action-server ratios of that added latency (the target is <= 0.5 at both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from gateway.settings import ROOT
from tests.support import ActionServer, GatewayProcess, builder_request, free_port

OUT = ROOT / "bench" / "out"
WITH_ACTION = "are you open right now?"
WITHOUT_ACTION = "when are you open?"


@contextmanager
def gateway(mode: str, models: Path) -> Iterator[tuple[GatewayProcess, ActionServer | None]]:
    """A gateway whose English actions run `mode` ("in_process" or "http"), with its action server."""
    env = {
        "GATEWAY_BOTS_MODELS_DIR": str(models),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_MONITOR_INTERVAL_SECONDS": "0",
        "GATEWAY_LOGGING_LEVEL": "WARNING",
    }
    server = None
    with tempfile.TemporaryDirectory(prefix="bench-actions-") as tmp:
        if mode == "http":
            server = ActionServer(free_port()).start()
            config = Path(tmp) / "gateway.yml"
            endpoints = {"action_endpoint": {"url": server.url}}
            config.write_text(json.dumps({"bots": {"languages": {"en": {"endpoints": endpoints}}}}))
            env["GATEWAY_CONFIG"] = str(config)
        try:
            with GatewayProcess.start(free_port(), env, ready_timeout=600) as gw:
                yield gw, server
        finally:
            if server is not None:
                server.stop()


async def drive(url: str, users: int, turns: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per turn, by text; each user alternates the two texts in conversations of 10 turns."""
    samples: dict[str, list[float]] = {WITH_ACTION: [], WITHOUT_ACTION: []}
    connector = aiohttp.TCPConnector(limit=users)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def user(index: int) -> None:
            session = ""
            for turn in range(warmup + turns):
                if turn % 10 == 0:
                    session = f"bench-{index}-{uuid.uuid4().hex}"
                text = WITH_ACTION if turn % 2 == 0 else WITHOUT_ACTION
                started = time.perf_counter()
                body = builder_request(text, "en-US", session)
                async with http.post(f"{url}/webhook/google", json=body) as resp:
                    body = await resp.json()
                seconds = time.perf_counter() - started
                if resp.status != 200 or "firstSimple" not in body.get("prompt", {}):
                    raise RuntimeError(f"turn failed: {resp.status} {body}")
                if turn >= warmup:
                    samples[text].append(seconds)

        await asyncio.gather(*(user(i) for i in range(users)))
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"turns": {text: len(values) for text, values in samples.items()}}
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        with_ms = percentile(samples[WITH_ACTION], q) * 1000
        without_ms = percentile(samples[WITHOUT_ACTION], q) * 1000
        out[name] = {"with_action_ms": round(with_ms, 2), "without_ms": round(without_ms, 2)}
        out[name]["added_ms"] = round(with_ms - without_ms, 2)
    out["mean_added_ms"] = round(
        (statistics.fmean(samples[WITH_ACTION]) - statistics.fmean(samples[WITHOUT_ACTION])) * 1000, 2
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.actions", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=1, help="simulated users (default 1)")
    parser.add_argument("--turns", type=int, default=400, help="measured turns per user (default 400)")
    parser.add_argument("--warmup", type=int, default=40, help="unmeasured turns per user first")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    models = Path(os.environ.get("GATEWAY_MODEL_CACHE", ROOT / ".cache" / "models"))
    from bench.__main__ import machine, models_for

    models_for(["en", "pl", "de"], prod=False)  # trains missing models into the cache first
    config = vars(args) | {"out": str(args.out)}
    result: dict[str, Any] = {"machine": machine(), "config": config, "modes": {}}
    for mode in ("in_process", "http"):
        print(f"bench: gateway with {mode} actions ...", flush=True)
        with gateway(mode, models) as (gw, _):
            samples = asyncio.run(drive(gw.url, args.concurrency, args.turns, args.warmup))
        result["modes"][mode] = summary(samples)
        print(f"bench: {mode}: {json.dumps(result['modes'][mode])}", flush=True)
    ratios = {}
    for name in ("p50", "p99"):
        http = result["modes"]["http"][name]["added_ms"]
        ratios[name] = round(result["modes"]["in_process"][name]["added_ms"] / http, 3) if http > 0 else None
    result["ratios_in_process_to_http"] = ratios
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"actions-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nadded latency of a custom action (ms), {args.concurrency} user(s), {args.turns} turns each:")
    print(f"{'':12}{'p50':>10}{'p99':>10}")
    for mode in ("in_process", "http"):
        row = result["modes"][mode]
        print(f"{mode:12}{row['p50']['added_ms']:>10}{row['p99']['added_ms']:>10}")
    print(f"{'ratio':12}{ratios['p50']!s:>10}{ratios['p99']!s:>10}   (target <= 0.5)")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
