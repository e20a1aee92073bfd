"""An in-process gateway (create_app on pytest-aiohttp's test server) for fast, real webhook tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.settings import Settings
from tests.shapes import GOOGLE_SCHEMAS, schema_errors, shape_of


@asynccontextmanager
async def running_gateway(
    settings: Settings, ready_timeout: float = 180.0, prepare: Callable[[web.Application], None] | None = None
) -> AsyncIterator[TestClient]:
    """The real application on a local port, yielded once every bot has loaded its model.

    `prepare` may put test-only state on the app before it starts (e.g. Alexa's local trust).
    """
    app = create_app(settings)
    if prepare is not None:
        prepare(app)
    async with TestClient(TestServer(app)) as client:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ready_timeout
        while True:
            async with client.get("/readyz") as resp:
                if resp.status == 200:
                    break
                body = await resp.json()
            if loop.time() > deadline:
                raise TimeoutError(f"gateway not ready in {ready_timeout}s: {body}")
            await asyncio.sleep(0.1)
        yield client


async def post_raw(
    client: TestClient, data: bytes, content_type: str = "application/json", path: str = "/webhook/google"
) -> tuple[int, Any]:
    """POST raw bytes; the status and the decoded JSON answer (a non-JSON answer fails the test)."""
    async with client.post(path, data=data, headers={"Content-Type": content_type}) as resp:
        text = await resp.text()
        assert resp.content_type == "application/json", (
            f"{resp.status} answered {resp.content_type}: {text!r}"
        )
        return resp.status, json.loads(text)


async def post(client: TestClient, body: Any, path: str = "/webhook/google") -> tuple[int, Any]:
    """POST `body` as JSON; a Google answer must pass its shape's schema (tests/schemas/)."""
    status, answer = await post_raw(client, json.dumps(body).encode(), path=path)
    shape = shape_of(body)
    if path == "/webhook/google" and status == 200 and shape in GOOGLE_SCHEMAS:
        assert schema_errors(shape, answer) == [], (shape, answer)
    return status, answer
