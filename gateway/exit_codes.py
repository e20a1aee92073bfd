"""Exit codes of every `gateway` command, so CI can tell a broken bot from a broken setup.

0 ok; 1 a quality gate or a step failed (story tests, accuracy, a missing/failed/stale test verdict,
training); 2 usage or configuration error (bad flag or setting, unknown language, a model that does
not exist); 3 infrastructure unreachable (Redis, the model store): retry later, the bot is not at fault.
"""

from __future__ import annotations

from gateway.errors import (
    ActiveModelConflict,
    ConfigError,
    DeliveryError,
    GatewayError,
    InvalidModelName,
    ModelNotFound,
    StorageError,
)

OK = 0
FAILED = 1
USAGE = 2
UNREACHABLE = 3


def for_error(exc: GatewayError) -> int:
    """The exit code a command ends with when `exc` stops it."""
    if isinstance(exc, DeliveryError) and isinstance(exc.__cause__, GatewayError):
        return for_error(exc.__cause__)  # the pipeline wraps the failure of the step that stopped it
    if isinstance(exc, ConfigError | ModelNotFound | InvalidModelName):
        return USAGE
    if isinstance(exc, StorageError) and not isinstance(exc, ActiveModelConflict):
        return UNREACHABLE
    return FAILED
