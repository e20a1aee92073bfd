"""Benchmark (not a test): micro-batched vs one-at-a-time DIET/TED turns, in process.

`python -m bench.batching [--seconds 15] [--levels 1,16] [--langs en] [--rounds 2]`. One process loads each
language's config.prod.yml model twice (trained into the model cache first if missing): into an AgentPool
with `server.max_batch` 1 (one message per NLU call, today's path) and one with 16. At each concurrency
level, `level` closed-loop users run the bench's scripted conversation (greet, help, book, people, hours,
goodbye) against one pool for `--seconds`, then against the other; rounds alternate which goes first, so
machine drift hits both alike. Both pools run as the gateway does by default (turns on the event loop,
`running_turns` 1, in-memory trackers): the measure is the inference layer, without HTTP or Redis.

Prints turns/s, p50/p99 per turn and CPU ms per turn for each, the batched/single ratios, and the NLU batch
sizes seen; writes bench/out/batching-<stamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
import uuid
from pathlib import Path
from typing import Any

from bench import conversations as conv
from bench.__main__ import OUT, machine, models_for
from bench.stats import latency_summary
from gateway.agents.pool import AgentPool
from gateway.settings import load_settings
from gateway.storage.trackers import tracker_stores_for

MODES = {"single": 1, "batched": 16}


async def pools(models: dict[str, Path]) -> dict[str, AgentPool]:
    """One pool per mode, each with every language's prod model loaded."""
    settings = load_settings(overrides={"monitor.interval_seconds": 0})
    out = {}
    for mode, max_batch in MODES.items():
        pool = AgentPool(settings.bots, tracker_stores_for(settings), running_turns=1, max_batch=max_batch)
        for lang, path in models.items():
            await pool.load(lang, path)
        out[mode] = pool
    return out


async def drive(pool: AgentPool, langs: list[str], users: int, seconds: float) -> dict[str, Any]:
    """`users` closed-loop conversations for `seconds`; latency of every turn, CPU per turn, wrong answers."""
    latencies: list[float] = []
    wrong = 0
    deadline = time.perf_counter() + seconds

    async def user(number: int) -> None:
        nonlocal wrong
        lang = langs[number % len(langs)]
        while time.perf_counter() < deadline:
            sender = f"bench-{uuid.uuid4().hex}"
            for text, answer in conv.SCRIPTS[lang]:
                started = time.perf_counter()
                messages = await pool.respond(lang, sender, text)
                latencies.append((time.perf_counter() - started) * 1000)
                if not messages or messages[0].get("utter_action") != answer:
                    wrong += 1
                if time.perf_counter() >= deadline:
                    return

    processors = [pool.get(lang).require_model().agent.processor for lang in langs]
    before = [_batches(p) for p in processors]
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(user(n) for n in range(users)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    batches = sum(_batches(p) - was for p, was in zip(processors, before, strict=True))
    return {
        "turns": len(latencies),
        "turns_per_s": round(len(latencies) / wall, 2),
        "cpu_ms_per_turn": round(cpu * 1000 / max(1, len(latencies)), 2),
        "wrong": wrong,
        "nlu_calls_per_turn": round(batches / max(1, len(latencies)), 3) if batches else None,
        **latency_summary(latencies),
    }


def _batches(processor: Any) -> int:
    batcher = getattr(processor, "nlu_batcher", None)
    return batcher.batches if batcher is not None else 0


def ratios(batched: dict[str, Any], single: dict[str, Any]) -> dict[str, float | None]:
    def ratio(key: str) -> float | None:
        return round(batched[key] / single[key], 2) if batched[key] and single[key] else None

    return {key: ratio(key) for key in ("turns_per_s", "p50_ms", "p99_ms", "cpu_ms_per_turn")}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    models = models_for(args.langs, prod=True)
    loaded = await pools(models)
    for pool in loaded.values():  # warm-up: TensorFlow traces its functions on the first calls
        await drive(pool, args.langs, 16, 3)
    samples: dict[int, dict[str, list[dict[str, Any]]]] = {lvl: {m: [] for m in MODES} for lvl in args.levels}
    for round_number, level in itertools.product(range(args.rounds), args.levels):
        order = list(MODES) if round_number % 2 == 0 else list(reversed(MODES))
        for mode in order:
            result = await drive(loaded[mode], args.langs, level, args.seconds)
            samples[level][mode].append(result)
            print(f"round {round_number + 1} c={level} {mode:7}: {result}", flush=True)
    summary = {}
    for level, by_mode in samples.items():
        merged = {mode: _merge(runs) for mode, runs in by_mode.items()}
        summary[f"c={level}"] = {**merged, "batched/single": ratios(merged["batched"], merged["single"])}
    return {"machine": machine(), "config": vars(args) | {"modes": MODES}, "results": summary}


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run of each number across rounds (rounds differ by what else the machine did)."""
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = sorted(run[key] for run in runs if run[key] is not None)
        out[key] = values[len(values) // 2] if values else None
    return out


def quiet_rasa() -> None:
    """Rasa logs every turn at debug level through structlog: keep the measurement free of it."""
    import logging
    import sys

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batching", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="each measurement's duration")
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    parser.add_argument("--langs", type=lambda s: s.split(","), default=["en"])
    parser.add_argument("--rounds", type=int, default=2, help="measurements per mode and level (alternating)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    quiet_rasa()
    result = asyncio.run(run(args))
    for level, row in result["results"].items():
        print(f"{level}: batched/single {row['batched/single']}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"batching-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
