"""Typed readers of webhook JSON fields: every wrong type or missing field is a BadRequest naming it."""

from __future__ import annotations

import re
from typing import Any

from gateway.channels.protocol import JSON
from gateway.errors import BadRequest

MAX_SESSION_ID_CHARS = 512
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def obj(parent: JSON, key: str, where: str, *, required: bool = False) -> JSON:
    """`parent[key]` as an object ({} when absent and optional)."""
    value = parent.get(key)
    if value is None:
        if required:
            raise BadRequest(f"missing field {where}")
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"field {where} must be an object, got {_type(value)}")
    return value


def string(parent: JSON, key: str, where: str, *, required: bool = False) -> str:
    """`parent[key]` as a string ("" when absent and optional)."""
    value = parent.get(key)
    if value is None or (required and value == ""):
        if required:
            raise BadRequest(f"missing field {where}")
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"field {where} must be a string, got {_type(value)}")
    return value


def objects(parent: JSON, key: str, where: str, *, required: bool = False) -> list[JSON]:
    """`parent[key]` as a list of objects ([] when absent and optional)."""
    value = parent.get(key)
    if value is None or (required and value == []):
        if required:
            raise BadRequest(f"missing field {where}")
        return []
    if not isinstance(value, list):
        raise BadRequest(f"field {where} must be a list, got {_type(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise BadRequest(f"field {where}[{index}] must be an object, got {_type(item)}")
    return value


def boolean(parent: JSON, key: str, where: str) -> bool:
    """`parent[key]` as a boolean (False when absent)."""
    value = parent.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest(f"field {where} must be a boolean, got {_type(value)}")
    return value


def session_id(value: str, where: str) -> str:
    """A usable conversation id: non-empty, bounded, no control characters."""
    if not value:
        raise BadRequest(f"missing field {where}")
    if len(value) > MAX_SESSION_ID_CHARS:
        raise BadRequest(f"field {where} is longer than {MAX_SESSION_ID_CHARS} characters")
    if _CONTROL_RE.search(value):
        raise BadRequest(f"field {where} contains control characters")
    return value


def locale(*candidates: tuple[str, str]) -> str:
    """The first non-blank locale among (value, field) pairs; none at all is a BadRequest.

    A request without any locale did not come from Google (it always sends one), so it is refused
    rather than guessed; a locale that matches no bot still reaches the default bot.
    """
    for value, _ in candidates:
        if value.strip():
            return value.strip()
    raise BadRequest("missing locale: expected " + " or ".join(where for _, where in candidates))


def argument(arguments: list[JSON], name: str) -> JSON | None:
    """The legacy input argument called `name` (case-insensitive), if any."""
    for arg in arguments:
        if isinstance(arg.get("name"), str) and arg["name"].lower() == name.lower():
            return arg
    return None
