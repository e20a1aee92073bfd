"""Reading a webhook body safely: size limit, content type, UTF-8, JSON object, bounded nesting."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import hdrs, web

from gateway.errors import BadRequest

MAX_DEPTH = 32
READ_TIMEOUT_SECONDS = 5.0


async def read_json(
    request: web.Request, max_bytes: int, timeout: float = READ_TIMEOUT_SECONDS
) -> dict[str, Any]:
    """The request's JSON object, or BadRequest with the reason (413/415/408/400)."""
    return parse_json(await read_bytes(request, max_bytes, timeout))


async def read_bytes(request: web.Request, max_bytes: int, timeout: float = READ_TIMEOUT_SECONDS) -> bytes:
    """The raw body of a JSON request (signatures cover these bytes), or BadRequest (413/415/408/400)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise BadRequest(f"body of {request.content_length} bytes exceeds {max_bytes} bytes", status=413)
    # Not request.content_type: aiohttp parses that with the email package, ~1% of a turn's CPU.
    ctype = request.headers.get(hdrs.CONTENT_TYPE, "").partition(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise BadRequest(f"content type {ctype or '(none)'!r} is not application/json", status=415)
    try:
        # A client dribbling its body must not hold a handler (and its memory) for ever.
        raw = await asyncio.wait_for(_read_at_most(request, max_bytes), timeout)
    except asyncio.TimeoutError:
        raise BadRequest(f"body not received within {timeout:g} s", status=408) from None
    if not raw:
        raise BadRequest("empty body: expected a JSON object")
    return raw


def parse_json(raw: bytes) -> dict[str, Any]:
    """`raw` as a JSON object with bounded nesting, or BadRequest naming what is wrong."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = "body is not valid UTF-8" if "utf-8" in str(exc).lower() else f"invalid JSON: {exc}"
        raise BadRequest(reason) from exc
    if not isinstance(body, dict):
        raise BadRequest(f"body must be a JSON object, got {type(body).__name__}")
    if _depth(body) > MAX_DEPTH:
        raise BadRequest(f"JSON nested deeper than {MAX_DEPTH} levels")
    return body


async def _read_at_most(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, or 413 as soon as it grows past `max_bytes` (chunked bodies have no length)."""
    chunks: list[bytes] = []
    size = 0
    # StreamReader.read(n) returns whatever has arrived (up to n), so loop until the end of the body.
    while chunk := await request.content.read(max_bytes + 1 - size):
        size += len(chunk)
        if size > max_bytes:
            raise BadRequest(f"body exceeds {max_bytes} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (orjson already caps recursion at 1024)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > MAX_DEPTH:
                return deepest
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, dict | list))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, dict | list))
    return deepest
