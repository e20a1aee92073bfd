"""config/grafana-dashboard.json parses and asks only for metrics (and labels) the gateway exposes."""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from gateway import metrics
from gateway.settings import ROOT

DASHBOARD = ROOT / "config" / "grafana-dashboard.json"
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}
_METRIC = re.compile(r"\b((?:gateway|process|python)_[a-z0-9_]+)\b")
_SELECTOR = re.compile(r"\b((?:gateway|process|python)_[a-z0-9_]+)\{([^}]*)\}")
_MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")


def exposed() -> dict[str, set[str]]:
    """Every sample name the registry can expose -> its label names (histograms add `le`)."""
    labels: dict[str, set[str]] = {}
    wrappers = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    for wrapper in wrappers:
        names = set(wrapper._labelnames)  # declared labels, present even before the first sample
        for suffix in _SUFFIXES[wrapper._type]:
            labels[wrapper._name + suffix] = names | ({"le"} if suffix == "_bucket" else set())
    for family in metrics.REGISTRY.collect():  # process, platform and GC collectors
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return labels


def targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(panel["title"], t["expr"]) for panel in dashboard["panels"] for t in panel["targets"]]


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["type"] in {"timeseries", "stat", "table"}, panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for _, expr in targets(dashboard):
        assert set(re.findall(r"\$(\w+)", expr)) <= variables | {"__rate_interval"}, expr


def test_dashboard_uses_only_exposed_metrics_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    known = exposed()
    for title, expr in targets(dashboard):
        names = _METRIC.findall(expr)
        assert names, f"{title}: {expr} reads no gateway metric"
        for name in names:
            assert name in known, f"{title}: {name} is not exposed by gateway.metrics"
        for name, matchers in _SELECTOR.findall(expr):
            for label in _MATCHER.findall(matchers):
                assert label in known[name], f"{title}: {name} has no label {label!r}"
        for group in _BY.findall(expr):
            for label in (part.strip() for part in group.split(",")):
                assert any(label in known[name] for name in names), f"{title}: no metric has {label!r}"


def test_dashboard_covers_the_operators_questions() -> None:
    exprs = " ".join(expr for _, expr in targets(json.loads(DASHBOARD.read_text(encoding="utf-8"))))
    assert "rate(gateway_requests_total" in exprs  # request rate
    for quantile in ("0.5", "0.99"):  # p50 and p99 per language
        assert f"histogram_quantile({quantile}, sum by (le, lang) (rate(gateway_request_duration" in exprs
    assert 'status!~"2.."' in exprs  # errors
    assert "gateway_model_swaps_total" in exprs
    assert "gateway_bot_up" in exprs
