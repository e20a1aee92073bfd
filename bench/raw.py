"""The limit: Rasa agents called in-process (no HTTP, in-memory trackers); run as its own process.

    python -m bench.raw --model en=PATH --model pl=PATH --model de=PATH --concurrency 1,8,16 --out raw.json

Plays the same conversation mix as the load generator, with N concurrent conversations as asyncio tasks
calling `Agent.handle_message` directly; concurrency 1 is the plain sequential loop.

The bots' custom actions (bots/<lang>/actions.py; the booking form's validation runs there) execute in this
process: rasa-sdk's own `ActionExecutor` behind the agent's action endpoint (bench/raw_actions.py), so Rasa's
`RemoteAction` calls them unchanged, minus the HTTP. Not an action server per language, for two reasons:
this is the ceiling of one process, and a ceiling must not pay for an HTTP round trip and JSON the gateway
it is compared with does not pay (its bots run their actions in process too, through the same executor);
and this process's CPU time is the figure reported, which would silently leave out the actions' share if
they ran in other processes. The usual deployment (bench/systems.py start_usual) is the one with action
servers, as people run Rasa.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from bench import conversations as conv
from bench.procs import rss_bytes
from bench.stats import Recorder
from gateway.settings import ROOT


async def _converse(
    agents: dict[str, Any], worker: int, deadline: float, left: list[int], rec: Recorder
) -> None:
    from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

    langs = tuple(agents)
    number = 0
    # Closed loop: the next message is due the moment the previous answer is in. Measuring from then,
    # not from when this task gets the loop, counts the wait behind other conversations' turns, as the
    # HTTP systems' latency does (Rasa's turn never yields, so that wait is the whole queue).
    due = time.perf_counter()
    while True:
        lang = conv.lang_for(worker, number, langs)
        session = conv.session_id(worker, number)
        number += 1
        for (text, _), allowed in zip(conv.SCRIPTS[lang], conv.expected(lang), strict=True):
            if left[0] <= 0 or time.perf_counter() >= deadline:
                return
            left[0] -= 1
            output = CollectingOutputChannel()
            await agents[lang].handle_message(UserMessage(text, output, session))
            done = time.perf_counter()
            latency, due = (done - due) * 1000.0, done
            await asyncio.sleep(0)  # let the other conversations take their turn, as a server would
            said = " ".join(m["text"] for m in output.messages if m.get("text"))
            if said in allowed:
                rec.ok(latency)
            else:
                rec.mismatch(latency, f"{lang} {text!r} -> {said!r}")


async def measure(
    agents: dict[str, Any], concurrency: int, duration: float, max_requests: int
) -> dict[str, Any]:
    """One closed-loop run at `concurrency`; CPU is this process's CPU time during the run."""
    rec = Recorder()
    left = [max_requests]
    cpu = time.process_time()
    rec.started = time.perf_counter()
    deadline = rec.started + duration
    await asyncio.gather(*(_converse(agents, worker, deadline, left, rec) for worker in range(concurrency)))
    rec.stopped = time.perf_counter()
    cpu = time.process_time() - cpu
    summary = rec.summary()
    return {
        "concurrency": concurrency,
        **summary,
        "cpu_seconds": round(cpu, 3),
        "cpu_ms_per_request": round(1000 * cpu / max(1, summary["requests"]), 3),
        "rss_bytes": rss_bytes([os.getpid()]),
    }


async def run(
    models: dict[str, Path], levels: list[int], duration: float, warmup: float, max_requests: int
) -> Any:
    """Load every agent, warm up, then measure each concurrency level in turn."""
    from rasa.core.agent import Agent

    from bench.raw_actions import action_endpoints

    started = time.perf_counter()
    actions = action_endpoints(ROOT / "bots", list(models))
    agents = {lang: Agent.load(str(path), action_endpoint=actions[lang]) for lang, path in models.items()}
    load_seconds = time.perf_counter() - started
    await measure(agents, max(levels), warmup, max_requests)
    results = [await measure(agents, level, duration, max_requests) for level in levels]
    names = {lang: sorted(endpoint.names) if endpoint else [] for lang, endpoint in actions.items()}
    return {"load_seconds": round(load_seconds, 2), "actions": names, "levels": results}


def main() -> int:
    """Entry point of `python -m bench.raw`."""
    parser = argparse.ArgumentParser(prog="python -m bench.raw", description=__doc__)
    parser.add_argument("--model", action="append", required=True, help="LANG=PATH (repeat per language)")
    parser.add_argument("--concurrency", default="1,8,16")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore")
    models = {}
    for item in args.model:
        lang, _, path = item.partition("=")
        models[lang] = Path(path)
    levels = [int(level) for level in args.concurrency.split(",")]
    try:
        import uvloop  # the gateway and `rasa run` (Sanic) both run on uvloop

        uvloop.install()
    except ImportError:  # plain asyncio still works, only slower
        pass
    _quiet()
    result = asyncio.run(run(models, levels, args.duration, args.warmup, args.max_requests))
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


def _quiet() -> None:
    """Rasa logs each turn at debug level through structlog; keep the measurement free of it."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.WARNING)


if __name__ == "__main__":
    raise SystemExit(main())
