"""Security settings are validated at start-up and never leak through repr."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from gateway.settings import load_settings


@pytest.mark.parametrize(
    "url",
    [
        "http://www.googleapis.com/oauth2/v3/certs",  # plain http to a remote host: keys could be swapped
        "ftp://127.0.0.1/certs",
        "file:///etc/passwd",
        "https://",
        "certs.json",
    ],
)
def test_jwks_url_must_be_https_or_local_http(url: str) -> None:
    with pytest.raises(ConfigError, match=r"google\.jwks_url=.*https://"):
        load_settings(env={"GATEWAY_GOOGLE_JWKS_URL": url})


@pytest.mark.parametrize("url", ["https://www.googleapis.com/oauth2/v3/certs", "http://127.0.0.1:8081/certs"])
def test_accepted_jwks_urls(url: str) -> None:
    assert load_settings(env={"GATEWAY_GOOGLE_JWKS_URL": url}).google.jwks_url == url


def test_short_hmac_key_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match=r"models\.hmac_key: too short"):
        load_settings(env={"GATEWAY_MODELS_HMAC_KEY": "short"})


def test_secrets_stay_out_of_repr() -> None:
    settings = load_settings(
        env={
            "GATEWAY_MODELS_HMAC_KEY": "hmac-secret-0123456789",
            "GATEWAY_ADMIN_TOKEN": "admin-secret-0123456789",
            "GATEWAY_GOOGLE_PROJECT_ID": "my-actions-project",
        }
    )
    assert settings.google.project_id == "my-actions-project"
    assert "hmac-secret" not in repr(settings)
    assert "admin-secret" not in repr(settings)


@pytest.mark.parametrize(("key", "value"), [("MAX_HEADER_BYTES", "100"), ("READ_TIMEOUT_SECONDS", "0")])
def test_transport_limits_are_bounded(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key.lower()):
        load_settings(env={f"GATEWAY_SERVER_{key}": value})
