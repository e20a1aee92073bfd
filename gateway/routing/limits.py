"""Transport limits: header sizes for aiohttp's HTTP parser, and malformed requests logged without payload."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from gateway.settings import Settings

logger = logging.getLogger(__name__)

# aiohttp logs protocol errors here, with a traceback and a quote of the raw request bytes.
_PROTOCOL_LOGGER = "aiohttp.server"


def handler_args(settings: Settings) -> dict[str, Any]:
    """Request-handler arguments for `web.Application(handler_args=...)`: longest request line and header."""
    size = settings.server.max_header_bytes
    return {"max_line_size": size, "max_field_size": size}


class ProtocolErrorFilter(logging.Filter):
    """Turns aiohttp's "Error handling request" traceback for a malformed request into one short line.

    The original message quotes the raw bytes around the error, which may include someone's
    Authorization or Google-Assistant-Signature header; a client's bad request is not our bug.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = "refused a malformed HTTP request: %s (HTTP %s)"
            record.args = (type(exc).__name__, exc.code)
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.INFO
            record.levelname = logging.getLevelName(logging.INFO)
        return True


def install_protocol_error_filter() -> None:
    """Attach ProtocolErrorFilter to aiohttp's server logger once per process."""
    target = logging.getLogger(_PROTOCOL_LOGGER)
    if not any(isinstance(f, ProtocolErrorFilter) for f in target.filters):
        target.addFilter(ProtocolErrorFilter())
