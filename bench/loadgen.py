"""Closed-loop HTTP load: N concurrent conversations against one webhook URL; run as its own process.

    python -m bench.loadgen --url http://127.0.0.1:PORT --concurrency 16 --duration 20 --out result.json

Each of the N workers plays whole conversations (the six-turn script, languages rotating) and sends its next
turn as soon as the previous answer arrives. Every answer is checked against the bot's domain. Optional
probes (e.g. /healthz, /metrics) are sent on fresh connections at a fixed rate meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from bench import conversations as conv
from bench.stats import Recorder, latency_summary

# orjson and a fixed header: the client shares the cores with the server, so it should cost little.
_JSON = {"Content-Type": "application/json"}


class _Budget:
    """Stops the run after `max_requests` or `duration` seconds, whichever comes first."""

    def __init__(self, max_requests: int, duration: float) -> None:
        self.left = max_requests
        self.deadline = time.perf_counter() + duration

    def take(self) -> bool:
        if self.left <= 0 or time.perf_counter() >= self.deadline:
            return False
        self.left -= 1
        return True


async def _converse(
    http: aiohttp.ClientSession, url: str, worker: int, langs: tuple[str, ...], budget: _Budget, rec: Recorder
) -> None:
    number = 0
    while True:
        lang = conv.lang_for(worker, number, langs)
        session = conv.session_id(worker, number)
        number += 1
        for (text, _), allowed in zip(conv.SCRIPTS[lang], conv.expected(lang), strict=True):
            if not budget.take():
                return
            body = conv.builder_request(lang, session, text)
            started = time.perf_counter()
            try:
                async with http.post(url, data=orjson.dumps(body), headers=_JSON) as resp:
                    raw = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                rec.error(f"{type(exc).__name__}: {exc}")
                break  # the conversation's state is unknown now: start a new one
            latency = (time.perf_counter() - started) * 1000.0
            if status != 200:
                rec.error(f"HTTP {status}: {raw[:200]!r}")
                break
            try:
                said = conv.speech(orjson.loads(raw))
            except ValueError:
                rec.error(f"not JSON: {raw[:200]!r}")
                break
            if said in allowed:
                rec.ok(latency)
            else:
                rec.mismatch(latency, f"{lang} {text!r} -> {said!r}")


async def _probe(paths: list[str], interval: float, stop: asyncio.Event) -> dict[str, Any]:
    """GET each URL every `interval` seconds on a new connection, as a load balancer's check would."""
    latencies: dict[str, list[float]] = {path: [] for path in paths}
    statuses: dict[str, dict[str, int]] = {path: {} for path in paths}
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        while not stop.is_set():
            for path in paths:
                started = time.perf_counter()
                try:
                    async with http.get(path) as resp:
                        await resp.read()
                        key = str(resp.status)
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    key = type(exc).__name__
                latencies[path].append((time.perf_counter() - started) * 1000.0)
                statuses[path][key] = statuses[path].get(key, 0) + 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    return {path: {**latency_summary(latencies[path]), "statuses": statuses[path]} for path in paths}


async def run(
    base: str,
    path: str,
    concurrency: int,
    duration: float,
    max_requests: int,
    langs: tuple[str, ...],
    probes: list[str],
    probe_interval: float,
    timeout: float,
) -> dict[str, Any]:
    """One closed-loop run; returns the summary (and probe results when asked)."""
    rec = Recorder()
    cpu = time.process_time()
    budget = _Budget(max_requests, duration)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    stop = asyncio.Event()
    probe_task = asyncio.create_task(_probe(probes, probe_interval, stop)) if probes else None
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as http:
        rec.started = time.perf_counter()
        await asyncio.gather(
            *(_converse(http, base + path, worker, langs, budget, rec) for worker in range(concurrency))
        )
        rec.stopped = time.perf_counter()
    stop.set()
    cpu = time.process_time() - cpu
    summary = rec.summary()
    # The client shares the machine's cores with the server: its CPU per request says how much it took.
    client = round(1000 * cpu / max(1, summary["requests"]), 3)
    out = {"concurrency": concurrency, **summary, "loadgen_cpu_ms_per_request": client}
    if probe_task is not None:
        out["probes"] = await probe_task
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--url", required=True, help="base URL, http://127.0.0.1:PORT (loopback only)")
    parser.add_argument("--path", default="/webhook/google")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (upper bound)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="requests (upper bound)")
    parser.add_argument("--langs", default=",".join(conv.LANGS))
    parser.add_argument("--probe", action="append", default=[], help="GET this URL meanwhile (repeatable)")
    parser.add_argument("--probe-interval", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
    parser.add_argument("--out", type=Path, help="write the JSON result here (default: stdout)")
    return parser


def main() -> int:
    """Entry point of `python -m bench.loadgen`."""
    args = _parser().parse_args()
    if any(urlsplit(url).hostname not in ("127.0.0.1", "::1") for url in [args.url, *args.probe]):
        print("bench.loadgen: refusing a non-loopback target", file=sys.stderr)
        return 2
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio still works, only slower
        pass
    langs = tuple(lang for lang in args.langs.split(",") if lang)
    result = asyncio.run(
        run(
            args.url.rstrip("/"),
            args.path,
            args.concurrency,
            args.duration,
            args.max_requests,
            langs,
            args.probe,
            args.probe_interval,
            args.timeout,
        )
    )
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
