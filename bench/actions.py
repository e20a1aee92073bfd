"""Benchmark (not a test): what a custom action adds to a turn, in process vs on an HTTP action server.

`make bench ARGS="--actions"` (or `python -m bench.actions`). Two real gateway processes side by side, the
English bot's actions in process in one (its endpoints.yml), on a real `python -m rasa_sdk` action server on
this machine in the other (bots.languages.en.endpoints). `--concurrency` users send both the same turns,
interleaved: "are you open right now?" (runs action_opening_status) and "when are you open?" (the same kind
of one-response turn without a custom action), alternating in the same conversations.
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
def gateways(models: Path) -> Iterator[dict[str, GatewayProcess]]:
    """Both gateways at once: English actions in process, and on a real action server."""
    env = {
        "GATEWAY_BOTS_MODELS_DIR": str(models),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_MONITOR_INTERVAL_SECONDS": "0",
        "GATEWAY_LOGGING_LEVEL": "WARNING",
    }
    server = ActionServer(free_port()).start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-actions-") as tmp:
            config = Path(tmp) / "gateway.yml"
            endpoints = {"action_endpoint": {"url": server.url}}
            config.write_text(json.dumps({"bots": {"languages": {"en": {"endpoints": endpoints}}}}))
            with (
                GatewayProcess.start(free_port(), env, ready_timeout=600) as in_process,
                GatewayProcess.start(
                    free_port(), {**env, "GATEWAY_CONFIG": str(config)}, ready_timeout=600
                ) as http,
            ):
                yield {"in_process": in_process, "http": http}
    finally:
        server.stop()


async def drive(
    urls: dict[str, str], users: int, rounds: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    """Seconds per turn by mode and text. A round is one turn of each text on each gateway, interleaved, so
    the machine's load at any moment weighs on both modes alike; conversations last 5 rounds."""
    samples: dict[str, dict[str, list[float]]] = {
        mode: {WITH_ACTION: [], WITHOUT_ACTION: []} for mode in urls
    }
    connector = aiohttp.TCPConnector(limit=users * len(urls))
    async with aiohttp.ClientSession(connector=connector) as http:

        async def turn(mode: str, text: str, session: str, measured: bool) -> None:
            body = builder_request(text, "en-US", session)
            started = time.perf_counter()
            async with http.post(f"{urls[mode]}/webhook/google", json=body) as resp:
                answer = await resp.json()
            seconds = time.perf_counter() - started
            if resp.status != 200 or "firstSimple" not in answer.get("prompt", {}):
                raise RuntimeError(f"{mode} turn failed: {resp.status} {answer}")
            if measured:
                samples[mode][text].append(seconds)

        async def user(index: int) -> None:
            sessions: dict[str, str] = {}
            for number in range(warmup + rounds):
                if number % 5 == 0:
                    sessions = {mode: f"bench-{index}-{uuid.uuid4().hex}" for mode in urls}
                order = [(mode, text) for mode in urls for text in (WITH_ACTION, WITHOUT_ACTION)]
                if number % 2:
                    order.reverse()
                for mode, text in order:
                    await turn(mode, text, sessions[mode], number >= warmup)

        await asyncio.gather(*(user(i) for i in range(users)))
    return samples


def histogram_quantile(metrics_text: str, q: float, **labels: str) -> float | None:
    """Prometheus' histogram_quantile over one series of gateway_action_duration_seconds (seconds)."""
    from tests.scrape import parse

    buckets = sorted(
        (float(dict(key)["le"]), count)
        for (name, key), count in parse(metrics_text).samples.items()
        if name == "gateway_action_duration_seconds_bucket" and labels.items() <= dict(key).items()
    )
    if not buckets or buckets[-1][1] == 0:
        return None
    rank, lower, below = q * buckets[-1][1], 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = upper, count
    return None


def action_call_times(url: str, mode: str) -> dict[str, float | None]:
    """p50/p99 (ms) of the action calls themselves, from the gateway's own histogram."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    labels = {"lang": "en", "action": "action_opening_status", "mode": mode}
    out: dict[str, float | None] = {}
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        value = histogram_quantile(text, q, **labels)
        out[name] = None if value is None else round(value * 1000, 3)
    return out


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
    parser.add_argument("--turns", type=int, default=300, help="measured rounds per user (4 turns each)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured rounds per user first")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    models = Path(os.environ.get("GATEWAY_MODEL_CACHE", ROOT / ".cache" / "models"))
    from bench.__main__ import machine, models_for

    models_for(["en", "pl", "de"], prod=False)  # trains missing models into the cache first
    config = vars(args) | {"out": str(args.out)}
    result: dict[str, Any] = {"machine": machine(), "config": config, "modes": {}}
    print("bench: starting an action server and two gateways (in process, http) ...", flush=True)
    with gateways(models) as gws:
        samples = asyncio.run(
            drive({m: gw.url for m, gw in gws.items()}, args.concurrency, args.turns, args.warmup)
        )
        # The calls themselves (warm-up rounds included), timed inside each gateway.
        calls = {mode: action_call_times(gw.url, mode) for mode, gw in gws.items()}
    for mode in ("in_process", "http"):
        result["modes"][mode] = summary(samples[mode]) | {"action_call_ms": calls[mode]}
        print(f"bench: {mode}: {json.dumps(result['modes'][mode])}", flush=True)
    ratios: dict[str, float | None] = {}
    call_ratios: dict[str, float | None] = {}
    for name in ("p50", "p99"):
        http = result["modes"]["http"][name]["added_ms"]
        ratios[name] = round(result["modes"]["in_process"][name]["added_ms"] / http, 3) if http > 0 else None
        http_call, own_call = calls["http"][name], calls["in_process"][name]
        call_ratios[name] = round(own_call / http_call, 3) if http_call and own_call is not None else None
    result["ratios_in_process_to_http"] = {"end_to_end": ratios, "action_call": call_ratios}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"actions-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nadded latency of a custom action (ms), {args.concurrency} user(s), {args.turns} rounds each:")
    print(f"{'':12}{'p50':>10}{'p99':>10}")
    for mode in ("in_process", "http"):
        row = result["modes"][mode]
        print(f"{mode:12}{row['p50']['added_ms']:>10}{row['p99']['added_ms']:>10}")
    print(f"{'ratio':12}{ratios['p50']!s:>10}{ratios['p99']!s:>10}   (target <= 0.5)")
    print("the action call alone, timed in the gateway (gateway_action_duration_seconds, ms):")
    for mode in ("in_process", "http"):
        print(f"{mode:12}{calls[mode]['p50']!s:>10}{calls[mode]['p99']!s:>10}")
    print(f"{'ratio':12}{call_ratios['p50']!s:>10}{call_ratios['p99']!s:>10}   (target <= 0.5)")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
