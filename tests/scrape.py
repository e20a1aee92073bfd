"""Reading /metrics the way Prometheus does: prometheus-client's text parser over real HTTP."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """Samples of one scrape, keyed by sample name and label set."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    families: dict[str, str]  # family name -> type
    content_type: str

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when the series does not exist yet (counters start at 0)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        """Every label set of sample `name`."""
        return {labels: v for (n, labels), v in self.samples.items() if n == name}

    def delta(self, before: Scrape, name: str, **labels: str) -> float:
        """How much the sample grew since `before`."""
        return self.value(name, **labels) - before.value(name, **labels)


def parse(text: str, content_type: str = "") -> Scrape:
    """Parse Prometheus text exposition."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    families: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples, families, content_type)


async def scrape(http: aiohttp.ClientSession, base_url: str) -> Scrape:
    """GET /metrics and parse it (asserting a 200)."""
    async with http.get(base_url + "/metrics") as resp:
        assert resp.status == 200, await resp.text()
        return parse(await resp.text(), resp.headers.get("Content-Type", ""))


async def scrape_client(client: object) -> Scrape:
    """Scrape an in-process app through pytest-aiohttp's TestClient (over its real socket)."""
    from aiohttp.test_utils import TestClient

    assert isinstance(client, TestClient)
    return await scrape(client.session, str(client.make_url("")).rstrip("/"))
