"""Google request verification over real HTTP: keys made here, served by a local JWKS endpoint."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.metrics import REGISTRY
from tests.security.conftest import (
    PROJECT_ID,
    JwksServer,
    SigningKey,
    claims,
    gateway_settings,
    hs256_with_public_key,
    new_key,
    sign,
    start_gateway,
    unsigned_token,
    write_jwks,
)
from tests.support import builder_request, free_port, responses

WEBHOOK = "/webhook/google"


def failures(reason: str) -> float:
    value = REGISTRY.get_sample_value("gateway_auth_failures_total", {"kind": "google", "reason": reason})
    return value or 0.0


async def post(client: Any, token: str | None, header: str = "Google-Assistant-Signature", **kw: Any) -> Any:
    headers = {header: token} if token is not None else {}
    body = kw.pop("body", None) or builder_request("hello", "en-US")
    return await client.post(kw.pop("path", WEBHOOK), json=body, headers=headers)


def assert_no_secret_in_logs(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    for record in caplog.records:
        text = record.getMessage()
        assert record.exc_info is None, f"traceback logged: {text}"
        for secret in secrets:
            assert secret[-40:] not in text, "a token reached the log"


@pytest.fixture
async def verified(aiohttp_client: Any, jwks: JwksServer) -> Any:
    """A gateway that requires Google's signature, keys from the local JWKS URL."""
    settings = gateway_settings(**{"google.project_id": PROJECT_ID, "google.jwks_url": jwks.url})
    return await start_gateway(aiohttp_client, settings)


async def test_valid_token_passes_and_unsigned_is_refused(
    verified: Any, google_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    before = failures("missing_token")
    resp = await post(verified, None)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["error"].startswith("unauthorized: missing")
    assert failures("missing_token") == before + 1

    token = sign(google_key)
    resp = await post(verified, token)
    assert resp.status == 200  # no model loaded here: the bot's own "unavailable" prompt, but let in
    assert (await resp.json())["prompt"]["firstSimple"]["speech"]
    assert_no_secret_in_logs(caplog, token)


def _hostile(google_key: SigningKey, stranger_key: SigningKey) -> dict[str, tuple[str, str]]:
    now = int(time.time())
    return {
        # name: (token, reason label)
        "forged signature": (sign(stranger_key, kid=google_key.kid), "bad_signature"),
        "tampered claims": (_tamper(sign(google_key)), "bad_signature"),
        "wrong audience": (sign(google_key, claims(aud="someone-elses-project")), "wrong_audience"),
        "wrong issuer": (sign(google_key, claims(iss="https://evil.example.com")), "wrong_issuer"),
        "expired": (sign(google_key, claims(iat=now - 7200, nbf=now - 7200, exp=now - 3600)), "expired"),
        "not yet valid (nbf)": (sign(google_key, claims(nbf=now + 3600, exp=now + 7200)), "not_yet_valid"),
        "issued in the future": (sign(google_key, claims(iat=now + 3600, exp=now + 7200)), "not_yet_valid"),
        "missing exp": (sign(google_key, claims(exp=None)), "missing_claim"),
        "missing aud": (sign(google_key, claims(aud=None)), "missing_claim"),
        "alg none": (unsigned_token({"alg": "none", "kid": google_key.kid}, claims()), "bad_algorithm"),
        "alg None spelled": (
            unsigned_token({"alg": "None", "kid": google_key.kid}, claims()),
            "bad_algorithm",
        ),
        "HS256 with the public key": (hs256_with_public_key(google_key, claims()), "bad_algorithm"),
        "garbage": ("not-a-jwt", "malformed"),
        "three dots of nothing": ("..", "malformed"),
        "bad base64": ("@@@.###.$$$", "malformed"),
        "header not json": (unsigned_token({}, claims()).replace("e30", "bm90anNvbg", 1), "malformed"),
        "long garbage": ("a" * 3000 + "." + "b" * 3000 + ".c", "malformed"),
        "non-string kid": (unsigned_token({"alg": "RS256", "kid": 7}, claims(), b"x"), "malformed"),
    }


def _tamper(token: str) -> str:
    head, _, sig = token.split(".")
    body = unsigned_token({}, claims(aud=PROJECT_ID, sub="admin")).split(".")[1]
    return f"{head}.{body}.{sig}"


@pytest.mark.parametrize(
    "case",
    [
        "forged signature",
        "tampered claims",
        "wrong audience",
        "wrong issuer",
        "expired",
        "not yet valid (nbf)",
        "issued in the future",
        "missing exp",
        "missing aud",
        "alg none",
        "alg None spelled",
        "HS256 with the public key",
        "garbage",
        "three dots of nothing",
        "bad base64",
        "header not json",
        "long garbage",
        "non-string kid",
    ],
)
async def test_hostile_tokens_are_refused_and_counted(
    verified: Any,
    google_key: SigningKey,
    stranger_key: SigningKey,
    case: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token, reason = _hostile(google_key, stranger_key)[case]
    before = failures(reason)
    for header, value in (("Google-Assistant-Signature", token), ("Authorization", f"Bearer {token}")):
        resp = await post(verified, value, header)
        assert resp.status == 401, (case, header, await resp.text())
        body = await resp.json()
        assert body["error"].startswith("unauthorized: ")
        assert token not in body["error"]
    assert failures(reason) == before + 2
    assert_no_secret_in_logs(caplog, token)


async def test_legacy_authorization_header_bare_or_bearer(verified: Any, google_key: SigningKey) -> None:
    token = sign(google_key)
    for value in (token, f"Bearer {token}", f"bearer  {token} "):
        resp = await post(verified, value, "Authorization")
        assert resp.status == 200, value[:20]


async def test_health_check_must_be_signed_too(verified: Any, google_key: SigningKey) -> None:
    body = builder_request("", "en-US", handler="actions.handler.HEALTH_CHECK")
    resp = await post(verified, None, body=body)
    assert resp.status == 401
    resp = await post(verified, sign(google_key), body=body)
    assert resp.status == 200
    assert await resp.json() == {}


async def test_alias_route_is_verified_too(verified: Any) -> None:
    resp = await post(verified, None, path="/google_action")
    assert resp.status == 401


async def test_keys_are_cached_per_max_age(verified: Any, jwks: JwksServer, google_key: SigningKey) -> None:
    for _ in range(5):
        resp = await post(verified, sign(google_key))
        assert resp.status == 200
    assert jwks.hits == 1  # start-up prefetch (or first request); then max-age=300 holds


async def test_unknown_kid_triggers_one_refresh_and_is_still_refused(
    verified: Any, jwks: JwksServer, google_key: SigningKey, stranger_key: SigningKey
) -> None:
    assert (await post(verified, sign(google_key))).status == 200
    hits = jwks.hits
    before = failures("unknown_key")
    resp = await post(verified, sign(stranger_key))  # names its own kid, which nobody published
    assert resp.status == 401
    assert jwks.hits == hits + 1
    # More made-up kids right away do not hammer the key server (rate limited).
    for _ in range(3):
        resp = await post(verified, sign(stranger_key, kid=f"kid-{uuid.uuid4().hex}"))
        assert resp.status == 401
    assert jwks.hits == hits + 1
    assert failures("unknown_key") == before + 4


async def test_rotated_key_is_picked_up_on_first_use(
    verified: Any, jwks: JwksServer, google_key: SigningKey
) -> None:
    assert (await post(verified, sign(google_key))).status == 200
    rotated = new_key()
    jwks.keys = [google_key, rotated]  # Google publishes a new key before signing with it
    resp = await post(verified, sign(rotated))
    assert resp.status == 200
    assert (await post(verified, sign(google_key))).status == 200


async def test_token_without_kid_is_tried_against_every_key(
    verified: Any, google_key: SigningKey, stranger_key: SigningKey
) -> None:
    assert (await post(verified, sign(google_key, kid=None))).status == 200
    assert (await post(verified, sign(stranger_key, kid=None))).status == 401


async def test_offline_jwks_file(aiohttp_client: Any, tmp_path: Path, google_key: SigningKey) -> None:
    path = write_jwks(tmp_path / "google-certs.json", [google_key])
    settings = gateway_settings(**{"google.project_id": PROJECT_ID, "google.jwks_file": str(path)})
    client = await start_gateway(aiohttp_client, settings)
    assert (await post(client, None)).status == 401
    assert (await post(client, sign(google_key, claims(aud="other")))).status == 401
    assert (await post(client, sign(google_key))).status == 200
    # A key added to the file later is found: an unknown kid re-reads the file.
    later = new_key()
    write_jwks(path, [google_key, later])
    assert (await post(client, sign(later))).status == 200


async def test_unreachable_key_server_fails_closed(
    aiohttp_client: Any, google_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}/certs"  # nothing listens there
    settings = gateway_settings(**{"google.project_id": PROJECT_ID, "google.jwks_url": url})
    client = await start_gateway(aiohttp_client, settings)
    before = failures("keys_unavailable")
    resp = await post(client, sign(google_key))
    assert resp.status == 503  # our side cannot verify: not the caller's fault, and never let in
    assert "signing keys are unavailable" in (await resp.json())["error"]
    assert failures("keys_unavailable") >= before + 1
    assert (await post(client, None)).status == 401
    assert_no_secret_in_logs(caplog)


async def test_key_server_errors_keep_the_keys_we_have(
    verified: Any, jwks: JwksServer, google_key: SigningKey, stranger_key: SigningKey
) -> None:
    assert (await post(verified, sign(google_key))).status == 200
    jwks.status = 500
    assert (await post(verified, sign(stranger_key))).status == 401  # refresh fails...
    assert (await post(verified, sign(google_key))).status == 200  # ...old keys still verify


async def test_verification_off_warns_once_at_start_up(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.auth.google")
    client = await start_gateway(aiohttp_client, gateway_settings())
    for _ in range(3):
        resp = await post(client, None)
        assert resp.status == 200
    warnings = [r for r in caplog.records if "NOT verified" in r.getMessage()]
    assert len(warnings) == 1


async def test_bad_jwks_file_refuses_to_start(aiohttp_client: Any, tmp_path: Path) -> None:
    from gateway.errors import ConfigError

    path = tmp_path / "certs.json"
    path.write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}', encoding="utf-8")
    settings = gateway_settings(**{"google.project_id": PROJECT_ID, "google.jwks_file": str(path)})
    with pytest.raises(ConfigError, match="no usable RS256 key"):
        await start_gateway(aiohttp_client, settings)


async def test_correctly_signed_request_is_answered_by_the_bot(
    aiohttp_client: Any, jwks: JwksServer, google_key: SigningKey, model_paths: dict[str, Path]
) -> None:
    settings = gateway_settings(**{"google.project_id": PROJECT_ID, "google.jwks_url": jwks.url})
    client = await start_gateway(aiohttp_client, settings, {"en": model_paths["en"]})
    resp = await post(client, sign(google_key))
    assert resp.status == 200
    answer = await resp.json()
    assert answer["prompt"]["firstSimple"]["speech"] in responses("en", "utter_greet")
    # The same request from a plain client, unsigned: refused.
    url = str(client.make_url(WEBHOOK))
    async with aiohttp.ClientSession() as http, http.post(url, json=builder_request("hello")) as raw:
        assert raw.status == 401
