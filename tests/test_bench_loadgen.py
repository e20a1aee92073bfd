"""The bench's raw-stream HTTP client reads every response shape our servers send (real HTTP)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from bench.loadgen import _Connection


@pytest.fixture
async def server(aiohttp_server: Any) -> Any:
    seen: list[bytes] = []

    async def plain(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.json_response({"echo": (await request.json())["n"]})

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b'{"parts": ', b"[1, 2, ", b"3]}"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def closing(request: web.Request) -> web.Response:
        return web.Response(body=b"bye", headers={"Connection": "close"})

    async def failing(request: web.Request) -> web.Response:
        return web.json_response({"error": "nope"}, status=503)

    app = web.Application()
    app.router.add_post("/plain", plain)
    app.router.add_post("/chunked", chunked)
    app.router.add_post("/closing", closing)
    app.router.add_post("/failing", failing)
    srv = await aiohttp_server(app)
    srv.seen = seen
    return srv


async def test_keep_alive_posts_reuse_one_connection(server: Any) -> None:
    conn = _Connection("127.0.0.1", server.port, "/plain", timeout=10)
    try:
        for n in range(5):
            assert await conn.post(b'{"n": %d}' % n) == (200, b'{"echo": %d}' % n)
        assert conn.streams is not None
        assert server.seen == [b'{"n": %d}' % n for n in range(5)]
    finally:
        conn.close()


async def test_chunked_closing_and_error_responses(server: Any) -> None:
    chunked = _Connection("127.0.0.1", server.port, "/chunked", timeout=10)
    assert await chunked.post(b"{}") == (200, b'{"parts": [1, 2, 3]}')
    assert await chunked.post(b"{}") == (200, b'{"parts": [1, 2, 3]}')
    chunked.close()
    closing = _Connection("127.0.0.1", server.port, "/closing", timeout=10)
    assert await closing.post(b"{}") == (200, b"bye")
    assert closing.streams is None  # the server said close: the next post reconnects
    assert await closing.post(b"{}") == (200, b"bye")
    failing = _Connection("127.0.0.1", server.port, "/failing", timeout=10)
    status, body = await failing.post(b"{}")
    failing.close()
    assert status == 503 and b"nope" in body
