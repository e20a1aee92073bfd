"""The bench's verdicts: which targets a run is held to (light vs DIET/TED bots, batching on a quiet bot,
the hot swap), and the swap bench's machine-readable result from a real swap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import report
from gateway.settings import ROOT


def _point(concurrency: int, throughput: float, p50: float, p99: float) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "throughput": throughput,
        "p50_ms": p50,
        "p99_ms": p99,
        "rss_bytes": {"server": 1000, "rasa": 2000},
        "probes": {"/healthz": {"p99_ms": 20.0}},
    }


def _run(bots: str, **systems: list[dict[str, Any]]) -> dict[str, Any]:
    named = {
        name.replace("_", " "): {"levels": levels, "ready_seconds": 5.0} for name, levels in systems.items()
    }
    return {"config": {"bots": bots, "concurrency": [1, 16]}, "systems": named}


def _verdicts(result: dict[str, Any]) -> dict[str, tuple[str, bool | None]]:
    return {check.what: (check.target, check.ok) for check in report.checks(result)}


def test_diet_ted_runs_are_held_to_two_workers_at_twice_the_usual_throughput_and_half_its_p99() -> None:
    result = _run(
        "DIET/TED (config.prod.yml)",
        gateway_w1_thread=[_point(1, 10, 50, 80), _point(16, 20, 700, 900)],
        gateway_w2_thread=[_point(1, 10, 50, 80), _point(16, 45, 300, 500)],
        usual=[_point(1, 10, 60, 90), _point(16, 25, 500, 1000)],
    )
    verdicts = _verdicts(result)
    assert verdicts["gateway w2 thread / usual deployment, throughput at c=16"] == (">= 2.0x", False)
    assert verdicts["gateway w2 thread / usual deployment, p99 at c=16"] == ("<= 0.5x", True)
    # The targets are for two workers: one worker is not compared with the usual deployment.
    assert not any(what.startswith("gateway w1 thread / usual") for what in verdicts)
    assert verdicts["gateway w1 thread RSS / 3 rasa run RSS (3 languages)"] == ("<= 0.6x", True)
    assert verdicts["gateway w2 thread / gateway w1 thread, throughput at c=16"] == (">= 1.7x", True)
    # No start-up target for DIET/TED bots.
    assert not any("seconds from start" in what for what in verdicts)


def test_light_runs_keep_their_targets_for_every_worker_count() -> None:
    result = _run(
        "light (config.yml)",
        gateway_w1=[_point(16, 160, 80, 120)],
        gateway_w2=[_point(16, 310, 40, 70)],
        usual=[_point(16, 200, 100, 200)],
    )
    verdicts = _verdicts(result)
    assert verdicts["gateway w1 / usual deployment, throughput at c=16"] == (">= 1.5x", False)
    assert verdicts["gateway w2 / usual deployment, throughput at c=16"] == (">= 1.5x", True)
    assert verdicts["gateway w2 / usual deployment, p99 at c=16"] == ("<= 0.6x", True)
    assert verdicts["gateway w1 seconds from start to 3 bots ready"] == ("<= 20 s", True)


def test_batching_is_compared_with_the_unbatched_gateway_on_a_quiet_bot() -> None:
    result = _run(
        "DIET/TED (config.prod.yml)",
        gateway_w2_thread=[_point(1, 10, 54, 80), _point(16, 45, 300, 500)],
        gateway_w2_thread_unbatched=[_point(1, 10, 50, 80)],
        usual=[_point(16, 25, 500, 1000)],
    )
    verdicts = _verdicts(result)
    assert verdicts["gateway w2 thread / unbatched, p50 at c=1"] == ("<= 1.1x", True)
    # The unbatched system ran c=1 only: it is in no other comparison.
    assert not [what for what in verdicts if what.startswith("gateway w2 thread unbatched")]
    result["systems"]["gateway w2 thread unbatched"]["levels"] = [_point(1, 10, 45, 80)]
    assert _verdicts(result)["gateway w2 thread / unbatched, p50 at c=1"] == ("<= 1.1x", False)


def test_a_swap_is_judged_on_time_to_the_new_model_errors_and_its_p99_against_steady() -> None:
    result = _run("DIET/TED (config.prod.yml)", usual=[_point(16, 25, 500, 1000)])
    result["swap"] = {
        "first_new_seconds": 12.4,
        "errors": 0,
        "before": {"p99_ms": 150.0},
        "during": {"p99_ms": 560.0},
    }
    verdicts = _verdicts(result)
    assert verdicts["swap: seconds from the event to the new model's first answer"] == ("<= 30 s", True)
    assert verdicts["swap: failed requests"] == ("= 0", True)
    assert verdicts["swap: p99 during the swap / steady p99 before it"] == ("<= 2.0x", False)
    result["swap"] = {"first_new_seconds": None, "errors": 3, "before": {}, "during": {}}
    verdicts = _verdicts(result)
    assert verdicts["swap: seconds from the event to the new model's first answer"] == ("<= 30 s", None)
    assert verdicts["swap: failed requests"] == ("= 0", False)
    assert "swap: failed requests" not in _verdicts(_run("light (config.yml)"))


def test_the_swap_bench_reports_a_real_swap_as_json(tmp_path: Path) -> None:
    """Light bots, a private Redis, moto S3 and one gateway process: the new model answers, nothing fails."""
    out = tmp_path / "swap.json"
    argv = [sys.executable, "-m", "bench.swap", "--seconds", "4", "--users", "2", "--json", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = json.loads(out.read_text())
    assert found["config"] == "config.yml"
    assert found["first_new_seconds"] is not None and found["first_new_seconds"] > 0
    assert found["errors"] == 0
    for phase in ("before", "during", "after"):
        assert found[phase]["requests"] > 0, found
        assert found[phase]["errors"] == 0
    assert found["before"]["p50_ms"] <= found["before"]["p99_ms"] <= found["before"]["max_ms"]
