"""Request parameters handed to the bot as metadata, and the legacy userStorage convention.

Names (gateway/channels/context.py) are the same in every generation: `session_params`, `intent_params`,
`user_params`, `home_params`. A legacy `user.userStorage` is a string; actions-on-google-nodejs writes
it as JSON.stringify({data: storage}) and reads JSON.parse(userStorage).data, so the gateway decodes and
writes the same convention (a JSON object without that wrapper is taken as the storage itself; any
other string is handed over as {"userStorage": "<the string>"}).
"""

from __future__ import annotations

import json

from gateway.channels import fields
from gateway.channels.protocol import JSON
from gateway.errors import BadRequest

# Key of session.params the gateway keeps for itself (chip memory): never shown to, or written by, a bot.
GATEWAY_KEY = "_gateway"
# Each params object a request carries, serialised: metadata is stored with every user event of the
# tracker, so it is kept small (Google's own userStorage limit is 10k bytes).
MAX_PARAMS_BYTES = 16 * 1024
USER_STORAGE_MAX_BYTES = 10_000


def _bounded(value: JSON, where: str) -> JSON:
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_PARAMS_BYTES:
        raise BadRequest(f"field {where} is larger than {MAX_PARAMS_BYTES} bytes")
    return value


def decode_user_storage(raw: str) -> JSON:
    """The storage a legacy userStorage string holds (see the module docstring)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"userStorage": raw}
    if isinstance(value, dict):
        data = value.get("data")
        return data if set(value) == {"data"} and isinstance(data, dict) else value
    return {"userStorage": raw}


def encode_user_storage(storage: JSON) -> str | None:
    """The userStorage string for `storage` as actions-on-google-nodejs writes it; None when too big."""
    text = json.dumps({"data": storage}, ensure_ascii=False, separators=(",", ":"))
    return text if len(text.encode()) <= USER_STORAGE_MAX_BYTES else None


def _put(out: JSON, name: str, value: JSON, where: str) -> None:
    if value:
        out[name] = _bounded(value, where)


def v3_params(body: JSON, session: JSON, user: JSON) -> JSON:
    """session_params, intent_params, user_params, home_params of an Actions Builder request."""
    out: JSON = {}
    session_params = fields.obj(session, "params", "session.params")
    _put(
        out, "session_params", {k: v for k, v in session_params.items() if k != GATEWAY_KEY}, "session.params"
    )
    intent_params = fields.obj(fields.obj(body, "intent", "intent"), "params", "intent.params")
    resolved: JSON = {}
    for name, value in intent_params.items():
        if not isinstance(value, dict):
            raise BadRequest(f"field intent.params.{name[:64]} must be an object")
        resolved[name] = value["resolved"] if "resolved" in value else value.get("original")
    _put(out, "intent_params", resolved, "intent.params")
    _put(out, "user_params", fields.obj(user, "params", "user.params"), "user.params")
    home = fields.obj(body, "home", "home")
    _put(out, "home_params", fields.obj(home, "params", "home.params"), "home.params")
    return out


def legacy_user_params(user: JSON, where: str) -> JSON:
    """user_params from a legacy AppRequest's `user.userStorage` (`where` prefixes the field name)."""
    raw = user.get("userStorage")
    if raw is None:
        return {}
    if not isinstance(raw, str):
        raise BadRequest(f"field {where}user.userStorage must be a string")
    if len(raw.encode()) > MAX_PARAMS_BYTES:
        raise BadRequest(f"field {where}user.userStorage is larger than {MAX_PARAMS_BYTES} bytes")
    storage = decode_user_storage(raw)
    return {"user_params": storage} if storage else {}


def dialogflow_params(result: JSON) -> JSON:
    """intent_params from a Dialogflow ES queryResult.parameters."""
    out: JSON = {}
    _put(
        out,
        "intent_params",
        fields.obj(result, "parameters", "queryResult.parameters"),
        "queryResult.parameters",
    )
    return out
