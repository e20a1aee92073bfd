"""Every channel example in README.md is posted verbatim to the real gateway and answered exactly as shown.

An example is a pair of fenced JSON blocks, each after a marker line:
`<!-- example: <name> request POST <path> -->` and `<!-- example: <name> response -->`.
The gateway here runs with default settings (channels unverified); Alexa, which is off by default and
always verified, posts its example in tests/test_channel_alexa.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from gateway.settings import ROOT, load_settings
from tests.inprocess import running_gateway

_BLOCK = re.compile(r"<!-- example: (\S+) (request POST (\S+)|response) -->\s*```json\n(.*?)```", re.DOTALL)
SIGNED_ELSEWHERE = {"alexa"}


def examples() -> dict[str, dict[str, Any]]:
    """README examples by name: {"path", "request", "response"}."""
    out: dict[str, dict[str, Any]] = {}
    for match in _BLOCK.finditer((ROOT / "README.md").read_text(encoding="utf-8")):
        name, kind, path, text = match.groups()
        entry = out.setdefault(name, {})
        if kind.startswith("request"):
            entry["path"] = path
            entry["request"] = text.encode()
        else:
            entry["response"] = json.loads(text)
    return out


EXAMPLES = examples()

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(models_dir: Path) -> AsyncIterator[TestClient]:
    settings = load_settings(overrides={"bots.models_dir": str(models_dir), "monitor.interval_seconds": 0})
    async with running_gateway(settings) as client:
        yield client


async def test_every_example_has_a_request_and_a_response() -> None:
    assert "rest" in EXAMPLES
    for name, example in EXAMPLES.items():
        assert set(example) == {"path", "request", "response"}, name


@pytest.mark.parametrize("name", sorted(set(EXAMPLES) - SIGNED_ELSEWHERE))
async def test_readme_example_is_answered_as_documented(client: TestClient, name: str) -> None:
    example = EXAMPLES[name]
    headers = {"Content-Type": "application/json"}
    async with client.post(example["path"], data=example["request"], headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert await resp.json() == example["response"]
