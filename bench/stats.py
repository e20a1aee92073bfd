"""Latency and throughput summaries shared by the load generator and the raw-agent runner."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(latencies_ms: list[float]) -> dict[str, Any]:
    """count, p50, p90, p99 and max in milliseconds."""
    values = sorted(latencies_ms)
    return {
        "count": len(values),
        "p50_ms": _round(percentile(values, 50)),
        "p90_ms": _round(percentile(values, 90)),
        "p99_ms": _round(percentile(values, 99)),
        "max_ms": _round(values[-1] if values else None),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass
class Recorder:
    """Collects one load run: latencies of every answer, errors (no answer), wrong answers, a few samples."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    wrong: int = 0
    samples: list[str] = field(default_factory=list)
    # Open loop: requests given up after the timeout, and how long each had waited (a lower bound).
    timeouts: int = 0
    timed_out_ms: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    stopped: float | None = None

    def ok(self, latency_ms: float) -> None:
        self.latencies_ms.append(latency_ms)

    def error(self, what: str) -> None:
        self.errors += 1
        self._sample(what)

    def mismatch(self, latency_ms: float, what: str) -> None:
        self.latencies_ms.append(latency_ms)
        self.wrong += 1
        self._sample(what)

    def timeout(self, waited_ms: float, what: str) -> None:
        self.timeouts += 1
        self.timed_out_ms.append(waited_ms)
        self._sample(what)

    def _sample(self, what: str) -> None:
        if len(self.samples) < 5:
            self.samples.append(what[:300])

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + self.errors + self.timeouts

    def summary(self) -> dict[str, Any]:
        """Throughput counts only correct answers; latency covers every answer, wrong ones included, and
        the timed-out requests at the time they were given up (so a p99 past the timeout is a lower bound)."""
        seconds = (self.stopped or time.perf_counter()) - self.started
        ok = len(self.latencies_ms) - self.wrong
        return {
            "requests": self.requests,
            "ok": ok,
            "errors": self.errors,
            "wrong": self.wrong,
            "timeouts": self.timeouts,
            "seconds": round(seconds, 3),
            "throughput": round(ok / seconds, 2) if seconds > 0 else 0.0,
            **latency_summary(self.latencies_ms + self.timed_out_ms),
            "error_samples": self.samples,
        }
