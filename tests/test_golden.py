"""Golden request/response pairs for every webhook shape, answered by the real gateway with real models.

Each `tests/golden/<shape>/<case>.request.json` is built from the channel's documented samples; the matching
`.response.json` is the exact answer expected (cases use single-variant bot responses so they are
deterministic). Regenerate after a deliberate change with `GOLDEN_UPDATE=1` and review the diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from gateway.channels import chips
from gateway.channels.google import detect
from gateway.settings import load_settings
from tests.inprocess import post, running_gateway
from tests.shapes import schema_errors, shape_of

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*/*.request.json"))
# Where each folder's requests go: Google's shapes share one endpoint, every other channel has its own.
GOOGLE_SHAPES = {"actions_builder", "conversation_v2", "dialogflow"}
PATHS = {
    **dict.fromkeys(GOOGLE_SHAPES, "/webhook/google"),
    "rest": "/webhooks/rest/webhook",
    "dialogflow_cx": "/webhook/dialogflow-cx",
    "dialogflow_es": "/webhook/dialogflow-es",
}
SCHEMAS = {"dialogflow_es": "dialogflow"}  # ES on its own path answers exactly as on Google's
# Seals the chip memory in the golden answers (and the chip round-trip requests carry its seal).
MEMORY_KEY = "golden-memory-key-0123456789"


def load(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


def save(path: Path, body: object) -> None:
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(models_dir: Path) -> AsyncIterator[TestClient]:
    settings = load_settings(
        overrides={
            "bots.models_dir": str(models_dir),
            "monitor.interval_seconds": 0,
            "google.memory_key": MEMORY_KEY,
        }
    )
    async with running_gateway(settings) as client:
        yield client


def test_every_shape_has_golden_cases() -> None:
    assert {case.parent.name for case in CASES} == set(PATHS)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name.split('.')[0]}")
async def test_golden_pair(client: TestClient, case: Path) -> None:
    request = load(case)
    if case.parent.name in GOOGLE_SHAPES:
        assert shape_of(request) == case.parent.name
    status, answer = await post(client, request, PATHS[case.parent.name])
    assert status == 200, answer
    expected_file = case.with_name(case.name.replace(".request.", ".response."))
    if os.environ.get("GOLDEN_UPDATE") == "1":
        save(expected_file, answer)
    expected = load(expected_file)
    assert schema_errors(SCHEMAS.get(case.parent.name, case.parent.name), expected) == []
    assert answer == expected


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.name.startswith("chip_tap_")], ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_chip_tap_cases_carry_a_memory_the_gateway_accepts(case: Path) -> None:
    """The tap reaches the bot as the button's payload (a stale seal would quietly send the title as text)."""
    body = load(case)
    assert isinstance(body, dict)
    turn = detect(body).decode(body)
    assert chips.recall(turn, chips.key_of(MEMORY_KEY)).payload.startswith("/")
