"""Open-loop HTTP load: turns sent at a fixed arrival rate, however many are outstanding; its own process.

    python -m bench.openloop --url http://127.0.0.1:PORT --rate 80 --duration 20 --out result.json

Request i is due at start + i / rate. At its due time it takes the conversation that has waited longest
for its next turn (or starts a new one, so a request never waits for an answer) and an idle keep-alive
connection (or opens one). Latency counts from the due time, not from the actual send, so a late load
generator or a server that stalls does not hide its queueing (no coordinated omission). A request without
an answer after --timeout seconds counts as a timeout. Throughput is the correct answers that arrived
within the `duration` window, divided by it; answers still arriving afterwards count in the latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench import conversations as conv
from bench.loadgen import _EXCHANGE_ERRORS, _Connection, judge
from bench.stats import Recorder, latency_summary


@dataclass
class _Conversation:
    lang: str
    session: str
    turn: int = 0


class _OpenLoop:
    """The state of one run: waiting conversations, idle connections, what was recorded."""

    def __init__(self, base: str, path: str, langs: tuple[str, ...], timeout: float, channel: str) -> None:
        target = urlsplit(base)
        self.host, self.port = target.hostname or "127.0.0.1", target.port or 80
        self.path, self.langs, self.timeout, self.channel = path, langs, timeout, channel
        self.waiting: collections.deque[_Conversation] = collections.deque()
        self.idle: list[_Connection] = []
        self.connections = 0
        self.started = 0
        self.rec = Recorder()
        self.window_end = 0.0
        self.ok_in_window = 0

    def conversation(self) -> _Conversation:
        if self.waiting:
            return self.waiting.popleft()
        number = self.started
        self.started += 1
        lang = conv.lang_for(0, number, self.langs)
        return _Conversation(lang, conv.session_id(0, number))

    def connection(self) -> _Connection:
        if self.idle:
            return self.idle.pop()
        self.connections += 1
        return _Connection(self.host, self.port, self.path, self.timeout)

    async def turn(self, conn: _Connection, talk: _Conversation, due: float) -> None:
        """One request due at `due`; the conversation waits for its next turn unless this one failed."""
        text, _ = conv.SCRIPTS[talk.lang][talk.turn]
        allowed = conv.expected(talk.lang)[talk.turn]
        body = orjson.dumps(conv.request_for(self.channel, talk.lang, talk.session, text))
        try:
            status, raw = await conn.post(body)
        except asyncio.TimeoutError:
            conn.close()
            self.rec.timeout((time.perf_counter() - due) * 1000.0, f"timeout: {talk.lang} {text!r}")
            return
        except _EXCHANGE_ERRORS as exc:
            conn.close()
            self.rec.error(f"{type(exc).__name__}: {exc}")
            return
        finally:
            self.idle.append(conn)  # a closed one reconnects on its next post
        now = time.perf_counter()
        latency = (now - due) * 1000.0
        if not judge(self.rec, self.channel, status, raw, allowed, latency, f"{talk.lang} {text!r}"):
            return
        if now <= self.window_end:
            self.ok_in_window += 1
        talk.turn += 1
        if talk.turn < len(conv.SCRIPTS[talk.lang]):
            self.waiting.append(talk)


async def run(
    base: str,
    path: str,
    rate: float,
    duration: float,
    langs: tuple[str, ...],
    timeout: float,
    channel: str = "google",
) -> dict[str, Any]:
    """One open-loop run of `rate` requests per second for `duration` seconds; the summary."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    loop = _OpenLoop(base, path, langs, timeout, channel)
    count = max(1, round(rate * duration))
    cpu = time.process_time()
    start = time.perf_counter() + 0.05
    loop.rec.started, loop.window_end = start, start + duration
    tasks: set[asyncio.Task[None]] = set()
    lateness = []
    for i in range(count):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lateness.append((time.perf_counter() - due) * 1000.0)
        task = asyncio.create_task(loop.turn(loop.connection(), loop.conversation(), due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    loop.rec.stopped = time.perf_counter()
    cpu = time.process_time() - cpu
    for conn in loop.idle:
        conn.close()
    summary = loop.rec.summary()
    return {
        "rate": rate,
        **summary,
        # Only answers inside the window: the drain after it would dilute an overloaded system's rate.
        "throughput": round(loop.ok_in_window / duration, 2),
        "seconds": round(duration, 3),
        "drain_seconds": round(max(0.0, loop.rec.stopped - loop.window_end), 3),
        "connections": loop.connections,
        "conversations": loop.started,
        # How late the load generator itself sent (already inside the latencies, which count from due).
        "send_lag_ms": latency_summary(lateness),
        "loadgen_cpu_ms_per_request": round(1000 * cpu / max(1, summary["requests"]), 3),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.openloop", description=__doc__)
    parser.add_argument("--url", required=True, help="base URL, http://127.0.0.1:PORT (loopback only)")
    parser.add_argument("--channel", default="google", choices=sorted(conv.CHANNEL_PATHS))
    parser.add_argument("--path", help="webhook path (default: the channel's)")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of scheduled sends")
    parser.add_argument("--langs", default=",".join(conv.LANGS))
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    parser.add_argument("--out", type=Path, help="write the JSON result here (default: stdout)")
    return parser


def main() -> int:
    """Entry point of `python -m bench.openloop`."""
    args = _parser().parse_args()
    if urlsplit(args.url).hostname not in ("127.0.0.1", "::1"):
        print("bench.openloop: refusing a non-loopback target", file=sys.stderr)
        return 2
    if args.rate <= 0 or args.duration <= 0:
        print("bench.openloop: --rate and --duration must be positive", file=sys.stderr)
        return 2
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio still works, only slower
        pass
    langs = tuple(lang for lang in args.langs.split(",") if lang)
    path = args.path or conv.CHANNEL_PATHS[args.channel]
    result = asyncio.run(
        run(args.url.rstrip("/"), path, args.rate, args.duration, langs, args.timeout, args.channel)
    )
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
