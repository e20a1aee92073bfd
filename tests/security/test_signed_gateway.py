"""A real gateway process with GATEWAY_GOOGLE_PROJECT_ID set (offline key file): signed in, rest out."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.security.conftest import PROJECT_ID, SigningKey, claims, sign, write_jwks
from tests.support import GatewayProcess, builder_request, free_port, post_json, responses

ADMIN_TOKEN = "e2e-admin-token-0123456789abcdef"
SENT: list[str] = []  # every secret this module sends; none may reach the gateway's log


@pytest.fixture(scope="module")
def gateway_signed(
    models_dir: Path, google_key: SigningKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    jwks_file = write_jwks(tmp_path_factory.mktemp("google") / "certs.json", [google_key])
    env = {
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_MONITOR_INTERVAL_SECONDS": "0",
        "GATEWAY_GOOGLE_PROJECT_ID": PROJECT_ID,
        "GATEWAY_GOOGLE_JWKS_FILE": str(jwks_file),
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_LOGGING_LEVEL": "DEBUG",  # even at DEBUG no token may be logged
    }
    SENT.append(ADMIN_TOKEN)
    with GatewayProcess.start(free_port(), env) as proc:
        yield proc


def webhook(gw: GatewayProcess, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    for value in (headers or {}).values():
        SENT.append(value.removeprefix("Bearer "))
    return post_json(gw.url + "/webhook/google", body, headers)


def speech(answer: dict[str, Any]) -> str:
    return str(answer["prompt"]["firstSimple"]["speech"])


def test_unsigned_request_gets_401(gateway_signed: GatewayProcess) -> None:
    status, body = webhook(gateway_signed, builder_request("hello", "en-US"))
    assert status == 401
    assert body["error"].startswith("unauthorized: missing")


def test_signed_request_is_answered_by_the_bot(
    gateway_signed: GatewayProcess, google_key: SigningKey
) -> None:
    headers = {"Google-Assistant-Signature": sign(google_key)}
    status, answer = webhook(gateway_signed, builder_request("hello", "en-US"), headers)
    assert status == 200
    assert speech(answer) in responses("en", "utter_greet")
    status, answer = webhook(gateway_signed, builder_request("cześć", "pl-PL"), headers)
    assert status == 200
    assert speech(answer) in responses("pl", "utter_greet")


def test_legacy_authorization_header_is_verified(
    gateway_signed: GatewayProcess, google_key: SigningKey
) -> None:
    status, answer = webhook(
        gateway_signed, builder_request("hallo", "de-DE"), {"Authorization": f"Bearer {sign(google_key)}"}
    )
    assert status == 200
    assert speech(answer) in responses("de", "utter_greet")


@pytest.mark.parametrize(
    "payload",
    [
        claims(aud="another-project"),
        claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        claims(iss="https://accounts.example.com"),
    ],
    ids=["wrong-audience", "expired", "wrong-issuer"],
)
def test_wrongly_signed_requests_get_401(
    gateway_signed: GatewayProcess, google_key: SigningKey, payload: dict[str, Any]
) -> None:
    headers = {"Google-Assistant-Signature": sign(google_key, payload)}
    status, body = webhook(gateway_signed, builder_request("hello", "en-US"), headers)
    assert status == 401
    assert set(body) == {"error"}


def test_signed_health_check_is_answered(gateway_signed: GatewayProcess, google_key: SigningKey) -> None:
    body = builder_request("", "en-US", handler="actions.handler.HEALTH_CHECK")
    assert webhook(gateway_signed, body)[0] == 401
    status, answer = webhook(gateway_signed, body, {"Google-Assistant-Signature": sign(google_key)})
    assert (status, answer) == (200, {})


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_admin_status_needs_the_token(gateway_signed: GatewayProcess, google_key: SigningKey) -> None:
    url = gateway_signed.url + "/admin/status"
    assert _get(url, {})[0] == 401
    assert _get(url, {"Authorization": "Bearer not-the-admin-token-at-all"})[0] == 401
    status, raw = _get(url, {"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 200
    assert b'"enabled":true' in raw and google_key.kid.encode() in raw
    assert ADMIN_TOKEN.encode() not in raw


def test_oversized_header_is_refused_and_the_gateway_keeps_serving(
    gateway_signed: GatewayProcess, google_key: SigningKey
) -> None:
    token = sign(google_key)
    status, _ = _get(gateway_signed.url + "/healthz", {"X-Junk": "j" * 20_000, "Authorization": token})
    SENT.append(token)
    assert status == 400
    assert _get(gateway_signed.url + "/healthz", {})[0] == 200


def test_log_holds_no_token_and_no_traceback(gateway_signed: GatewayProcess) -> None:
    log = gateway_signed.log.read_text(errors="replace")
    assert "must carry a Google-signed token for project " + PROJECT_ID in log
    assert "refused webhook request on /webhook/google: wrong_audience" in log  # refusals are visible
    assert "Traceback" not in log
    for secret in SENT:
        assert secret[-40:] not in log, "a token or the admin token reached the log"
    assert len(SENT) >= 8
