"""Settings given as GATEWAY_* environment variables: text parsed by each setting's declared type.

The environment is not YAML. Parsing it as YAML turned `1234_5678` into the number 12345678, a hex
key into a decimal number, and `null`/`~` into "unset" without a word. Here a value stays the exact
text until the setting that reads it says what it must be (gateway/settings.py's reader): strings
are kept byte for byte, numbers and booleans must be spelled plainly, and an empty value unsets an
optional setting (and is an error for one that is required).
"""

from __future__ import annotations

import re

_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
# Key names that hold secrets even when their dataclass field does not say so (repr=False).
_SECRET_WORDS = ("token", "secret", "password", "hmac", "private")


class EnvText(str):
    """The text of one GATEWAY_* variable, remembering which variable it came from (for errors)."""

    variable: str

    def __new__(cls, text: str, variable: str) -> EnvText:
        obj = super().__new__(cls, text)
        obj.variable = variable
        return obj


def parse_int(text: str) -> int | None:
    """Plain decimal integers only: no `_` separators, no hex, no floats."""
    return int(text) if _INT_RE.fullmatch(text) else None


def parse_float(text: str) -> float | None:
    """Plain decimal numbers (with an optional exponent): no `_`, no hex, no nan or inf."""
    return float(text) if _FLOAT_RE.fullmatch(text) else None


def parse_bool(text: str) -> bool | None:
    """true/false, yes/no, on/off or 1/0, in any case."""
    word = text.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    return None


def looks_secret(key: str) -> bool:
    """Whether a dotted setting key names a secret by its wording (admin.token, models.hmac_key...)."""
    leaf = key.rsplit(".", 1)[-1].lower()
    return any(word in leaf for word in _SECRET_WORDS)


def shown(value: object, secret: bool) -> str:
    """How an error message shows a setting's value: never a secret's text, only its length."""
    if secret and value is not None:
        return f"<secret, {len(str(value))} characters>"
    return repr(str(value)) if isinstance(value, EnvText) else repr(value)


def source(value: object) -> str:
    """' (from GATEWAY_X)' when `value` came from the environment, else ''."""
    return f" (from {value.variable})" if isinstance(value, EnvText) else ""
