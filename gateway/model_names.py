"""Model archive names and digests that arrive from outside (events, admin requests, stores, sidecars).

One check for every entry point, run before a name is joined to a folder or a bucket key. It raises
InvalidModelName, which is both a ModelRejected (the swapper refuses the model) and a ValueError (a
store turns it into its own ModelStoreError).
"""

from __future__ import annotations

import re

from gateway.errors import InvalidModelName

MODEL_SUFFIX = ".tar.gz"
MAX_NAME_CHARS = 200
# A plain file name: no folders, no leading dot, ends in .tar.gz (what `gateway train` and publish write).
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\.tar\.gz")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")


def is_model_name(name: str) -> bool:
    """Whether `name` is a plain model file name (for filtering folder listings without raising)."""
    return len(name) <= MAX_NAME_CHARS and _NAME_RE.fullmatch(name) is not None and ".." not in name


def validate_model_name(name: object) -> str:
    """`name` when it is a plain model file name (no folder, no `..`, ends .tar.gz), else InvalidModelName."""
    if not isinstance(name, str):
        raise InvalidModelName(f"model name must be a string, got {type(name).__name__}")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidModelName(f"model name longer than {MAX_NAME_CHARS} characters: {show(name)}")
    if not is_model_name(name):
        raise InvalidModelName(
            f"model name {show(name)} is not a plain file name: letters, digits, '.', '-', '_', '+' "
            f"ending in {MODEL_SUFFIX}, no folders"
        )
    return name


def validate_sha256(value: object) -> str:
    """`value` as 64 lower-case hex digits (surrounding blanks and case forgiven), else InvalidModelName."""
    digest = value.strip().lower() if isinstance(value, str) else None
    if digest is None or not _HEX64_RE.fullmatch(digest):
        raise InvalidModelName(f"sha256 must be 64 hex digits, got {show(value)}")
    return digest


def show(value: object) -> str:
    """A bounded, printable rendering of untrusted text for messages and logs."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
