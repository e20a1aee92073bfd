"""Compressed request bodies (CVE-2025-69223): a gzip bomb gets 415 and is never inflated (real HTTP).

aiohttp 3.9.5 inflates request bodies in its HTTP parser, each received chunk in full: the bomb below
is ~130 KB on the wire and 128 MiB inflated. The gateway must refuse it without inflating it, which
the test checks on the gateway process's peak memory (VmHWM, reset just before through
/proc/<pid>/clear_refs), not on the clock.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import GatewayProcess, builder_request

BOMB_INFLATED = 128 * 1024 * 1024
# Peak memory a refused bomb may add to the gateway; inflating even one 64 KiB chunk of it adds ~64 MiB.
MAX_GROWTH_KIB = 24 * 1024
REFUSED_GZIP = "Content-Encoding 'gzip' is not accepted: send the body uncompressed (identity)"


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """128 MiB of zeros as one gzip member (~130 KB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(BOMB_INFLATED // len(block))]
    return b"".join([*parts, packer.flush()])


def _peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    # "5": reset the peak resident set size to the current one (proc(5)).
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def _raw_post(port: int, path: str, body: bytes, *, chunked: bool) -> tuple[int, Any]:
    """POST `body` gzip-declared over a raw socket (no client library decides anything for us)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: gzip\r\n{framing}\r\nConnection: close\r\n\r\n"
    )

    async def send() -> None:
        writer.write(head.encode())
        if not chunked:
            writer.write(body)
        else:
            step = 16 * 1024
            for start in range(0, len(body), step):
                piece = body[start : start + step]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    sending = asyncio.create_task(send())
    try:
        status_line = await asyncio.wait_for(reader.readline(), 60)
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        answer = await reader.readexactly(int(headers["content-length"]))
    finally:
        # The server may close once it has answered; what is left of the bomb need not arrive.
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)
    assert headers.get("content-type", "").startswith("application/json"), (status_line, answer[:200])
    return int(status_line.split()[1]), json.loads(answer)


async def test_a_gzip_bomb_gets_415_and_is_never_inflated(gateway: GatewayProcess, gzip_bomb: bytes) -> None:
    pid = gateway.proc.pid
    _reset_peak(pid)
    before = _peak_kib(pid)
    # Chunked: the whole bomb; with a Content-Length: a prefix within server.max_body_bytes (64 KiB),
    # which the old parser inflated in one go (~60 MiB) before any size check could run.
    chunked = await _raw_post(gateway.port, "/webhook/google", gzip_bomb, chunked=True)
    sized = await _raw_post(gateway.port, "/google_action", gzip_bomb[:60_000], chunked=False)
    growth = _peak_kib(pid) - before

    assert growth < MAX_GROWTH_KIB, f"the gateway's peak memory grew by {growth} KiB"
    for status, answer in (chunked, sized):
        assert status == 415, answer
        assert answer["error"] == REFUSED_GZIP
    # Still serving, and an explicit identity encoding is fine.
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/webhook/google",
            data=json.dumps(builder_request("hello")).encode(),
            headers={"Content-Type": "application/json", "Content-Encoding": "identity"},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("coding", ["deflate", "br", "x-gzip", "identity, gzip", "zstd"])
async def test_any_encoding_but_identity_gets_415(gateway: GatewayProcess, coding: str) -> None:
    body = json.dumps(builder_request("hello")).encode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/webhook/google",
            data=body,
            headers={"Content-Type": "application/json", "Content-Encoding": coding},
        ) as resp,
    ):
        assert resp.status == 415
        answer = await resp.json()
    assert "is not accepted: send the body uncompressed (identity)" in answer["error"]
