"""The /metrics body: one function for every route that serves it, in one process or across workers.

One process: the gateway's registry as it is. Workers (`--workers N`): prometheus-client's
multiprocess mode. Every worker writes its values to files in the supervisor's private directory and
whichever worker answers a scrape merges them all, so one scrape holds every worker's counters and
histograms (summed, and kept after a worker dies, so `rate()` sees no reset) and each gauge merged as
its `multiprocess_mode` in gateway/metrics.py says. Process metrics (`process_*`) are per worker,
read from /proc for every running worker at scrape time, with a `pid` label; Python's GC metrics,
which only a process can read about itself, are left out in that mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, PlatformCollector, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from gateway import metrics
from gateway.errors import GatewayError
from gateway.worker_state import read_roster

CONTENT_TYPE = CONTENT_TYPE_LATEST
_MODEL_INFO = "gateway_model_info"

_registry: CollectorRegistry | None = None


def render() -> bytes:
    """The Prometheus text exposition of this gateway (all workers' when it runs several)."""
    return generate_latest(metrics.REGISTRY if _registry is None else _registry)


def use_worker_directory(directory: Path) -> None:
    """Serve the merged metrics of every worker of `directory` (called once, when a worker starts).

    prometheus-client picks its storage at import from PROMETHEUS_MULTIPROC_DIR, which the
    supervisor sets for its workers; a worker without it would count in memory only.
    """
    global _registry
    if prometheus_values.ValueClass is prometheus_values.MutexValue:
        raise GatewayError(
            "this worker was started without PROMETHEUS_MULTIPROC_DIR, so its metrics would stay "
            "invisible to the others; start workers with `gateway serve --workers N` only"
        )
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Merged(directory))
    registry.register(_WorkerProcesses(directory))
    PlatformCollector(registry=registry)
    _registry = registry


class _Merged(Collector):
    """Every worker's values from the files; model info series set to 0 (replaced models) left out."""

    def __init__(self, directory: Path) -> None:
        self._files = MultiProcessCollector(None, path=str(directory))

    def collect(self) -> Iterable[Metric]:
        for metric in self._files.collect():
            if metric.name == _MODEL_INFO:
                metric.samples = [sample for sample in metric.samples if sample.value]
            yield metric


class _WorkerProcesses(Collector):
    """`process_*` of every running worker, labelled with its pid."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._collectors: dict[int, ProcessCollector] = {}

    def collect(self) -> Iterable[Metric]:
        pids = [entry.pid for entry in read_roster(self._directory)]
        self._collectors = {pid: self._collectors.get(pid) or _process_collector(pid) for pid in pids}
        merged: dict[str, Metric] = {}
        for pid, collector in self._collectors.items():
            for family in collector.collect():
                out = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    out.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        return list(merged.values())


def _process_collector(pid: int) -> ProcessCollector:
    return ProcessCollector(pid=lambda: pid, registry=None)
