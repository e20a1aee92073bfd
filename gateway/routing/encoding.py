"""Request bodies are taken uncompressed only: no Content-Encoding but identity.

aiohttp 3.9.x (the version Rasa 3.6 pins) inflates a compressed request body as it arrives, each chunk
in full with no bound (CVE-2025-69223, fixed upstream only in 3.13.3): a 64 KiB gzip bomb becomes
~64 MB in memory before a handler can count a byte. So the server's parser never decompresses
(`auto_decompress=False`, see `handler_args`), and a request that declares any other encoding is
refused with 415 before its body is read. Google sends webhooks uncompressed; nothing is lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web

from gateway.errors import BadRequest

IDENTITY = "identity"
_SHOWN_CHARS = 40  # of a refused encoding in the error (the header is the client's text)


def handler_args() -> dict[str, Any]:
    """Request-handler arguments: never inflate a request body in the HTTP parser."""
    return {"auto_decompress": False}


def refused_encoding(request: web.Request) -> str | None:
    """The request's Content-Encoding when it is anything but identity (or empty), else None."""
    values = request.headers.getall(hdrs.CONTENT_ENCODING, ())
    codings = [part.strip().lower() for value in values for part in value.split(",")]
    refused = [coding for coding in codings if coding and coding != IDENTITY]
    return ", ".join(refused) if refused else None


@web.middleware
async def identity_only(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """415 `{"error": ...}` for a compressed request body, before anything reads it."""
    coding = refused_encoding(request)
    if coding is not None:
        shown = coding[:_SHOWN_CHARS] + ("..." if len(coding) > _SHOWN_CHARS else "")
        raise BadRequest(
            f"Content-Encoding {shown!r} is not accepted: send the body uncompressed (identity)", status=415
        )
    return await handler(request)
