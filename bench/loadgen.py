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


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just what a webhook POST needs.

    Not aiohttp's client: the load generator shares the cores with the servers it measures, and a
    request over raw asyncio streams costs a fraction of the CPU (see docs/performance.md), which leaves
    more of the machine to the systems under test. Responses must carry Content-Length or be chunked.
    """

    def __init__(self, host: str, port: int, path: str, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n".encode()
        )
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """Send `body`; return the status and the response body (reconnecting when the server closed)."""
        return await asyncio.wait_for(self._post(body), self.timeout)

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        if "content-length" in headers:
            data = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            data = await self._chunked(reader)
        else:
            raise ConnectionError(f"response without Content-Length or chunked body: {lines[0]}")
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, data

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers from our servers: the final blank line
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    def close(self) -> None:
        """Drop the connection (the next post opens a new one)."""
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


# What a failed exchange raises: the conversation's state is unknown then, so it starts anew.
_EXCHANGE_ERRORS = (
    OSError,
    ConnectionError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    asyncio.TimeoutError,
    ValueError,
    IndexError,
)


def judge(
    rec: Recorder,
    channel: str,
    status: int,
    raw: bytes,
    allowed: frozenset[str],
    latency_ms: float,
    what: str,
) -> bool | None:
    """Record one answer: True right, False wrong (a mismatch), None no usable answer (an error)."""
    if status != 200:
        rec.error(f"HTTP {status}: {raw[:200]!r}")
        return None
    try:
        said = conv.speech_for(channel, orjson.loads(raw))
    except ValueError:
        rec.error(f"not JSON: {raw[:200]!r}")
        return None
    if said not in allowed:
        rec.mismatch(latency_ms, f"{what} -> {said!r}")
        return False
    rec.ok(latency_ms)
    return True


async def _converse(
    conn: _Connection,
    worker: int,
    langs: tuple[str, ...],
    budget: _Budget,
    rec: Recorder,
    channel: str = "google",
) -> None:
    number = 0
    try:
        while True:
            lang = conv.lang_for(worker, number, langs)
            session = conv.session_id(worker, number)
            number += 1
            for (text, _), allowed in zip(conv.SCRIPTS[lang], conv.expected(lang), strict=True):
                if not budget.take():
                    return
                body = orjson.dumps(conv.request_for(channel, lang, session, text))
                started = time.perf_counter()
                try:
                    status, raw = await conn.post(body)
                except _EXCHANGE_ERRORS as exc:
                    conn.close()
                    rec.error(f"{type(exc).__name__}: {exc}")
                    break
                latency = (time.perf_counter() - started) * 1000.0
                if judge(rec, channel, status, raw, allowed, latency, f"{lang} {text!r}") is None:
                    break
    finally:
        conn.close()


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
    channel: str = "google",
) -> dict[str, Any]:
    """One closed-loop run; returns the summary (and probe results when asked)."""
    rec = Recorder()
    cpu = time.process_time()
    budget = _Budget(max_requests, duration)
    stop = asyncio.Event()
    probe_task = asyncio.create_task(_probe(probes, probe_interval, stop)) if probes else None
    target = urlsplit(base)
    host, port = target.hostname or "127.0.0.1", target.port or 80
    rec.started = time.perf_counter()
    await asyncio.gather(
        *(
            _converse(_Connection(host, port, path, timeout), worker, langs, budget, rec, channel)
            for worker in range(concurrency)
        )
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
    parser.add_argument("--channel", default="google", choices=sorted(conv.CHANNEL_PATHS))
    parser.add_argument("--path", help="webhook path (default: the channel's)")
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
            args.path or conv.CHANNEL_PATHS[args.channel],
            args.concurrency,
            args.duration,
            args.max_requests,
            langs,
            args.probe,
            args.probe_interval,
            args.timeout,
            args.channel,
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
