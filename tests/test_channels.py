"""Channel settings and the registry: which channels are served, where, and which are refused to start."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.channels.registry import CHANNEL_TYPES, enabled_channels
from gateway.errors import ConfigError
from gateway.routing.webhook import sender_id
from gateway.settings import CHANNEL_PATHS, load_settings
from tests.security.conftest import new_key

SKILL = "amzn1.ask.skill.00000000-0000-0000-0000-000000000000"


def served_posts(**overrides: Any) -> set[str]:
    """POST paths of the application built from these settings."""
    app = create_app(load_settings(overrides=overrides))
    return {
        route.resource.canonical
        for route in app.router.routes()
        if route.method == "POST" and route.resource is not None
    }


def test_every_channel_type_has_settings_and_a_default_path() -> None:
    assert set(CHANNEL_TYPES) == set(CHANNEL_PATHS)
    settings = load_settings()
    assert {name: s.path for name, s in settings.channels.items()} == CHANNEL_PATHS


def test_google_is_served_on_both_paths_and_can_be_switched_off_or_moved() -> None:
    assert {"/webhook/google", "/google_action"} <= served_posts()
    off = served_posts(**{"channels.google.enabled": False})
    assert "/webhook/google" not in off and "/google_action" not in off
    moved = served_posts(**{"channels.google.path": "/hooks/assistant/"})
    assert "/hooks/assistant" in moved and "/webhook/google" not in moved


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"channels.rest.path": "webhooks rest"}, "channels.rest.path"),
        ({"channels.rest.path": "/webhook/google"}, "share a path"),
        ({"channels.rest.token": "short"}, "channels.rest.token: too short"),
        ({"channels.dialogflow_es.username": "dialogflow"}, "channels.dialogflow_es.username"),
        ({"channels.dialogflow_cx.headers": "X-Secret"}, "channels.dialogflow_cx.headers"),
        ({"channels.dialogflow_cx.headers": {"X Secret": "v"}}, "channels.dialogflow_cx.headers"),
        ({"channels.alexa.enabled": True}, "channels.alexa.skill_id"),
        ({"channels.rest.enabled": "yes"}, "channels.rest.enabled"),
    ],
)
def test_bad_channel_settings_name_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(overrides=overrides)


def test_channel_settings_come_from_the_environment() -> None:
    settings = load_settings(
        env={
            "GATEWAY_CHANNELS_DIALOGFLOW_CX_HEADERS": "{X-Webhook-Secret: s3cret-value}",
            "GATEWAY_CHANNELS_DIALOGFLOW_CX_SERVICE_ACCOUNTS": "a@x.iam.gserviceaccount.com",
            "GATEWAY_CHANNELS_ALEXA_ENABLED": "true",
            "GATEWAY_CHANNELS_ALEXA_SKILL_ID": SKILL,
        }
    )
    cx = settings.channels["dialogflow_cx"]
    assert cx.headers == {"X-Webhook-Secret": "s3cret-value"}
    assert cx.service_accounts == ("a@x.iam.gserviceaccount.com",)
    assert settings.channels["alexa"].enabled and settings.channels["alexa"].skill_id == SKILL
    assert "s3cret" not in repr(settings)  # secrets stay out of logs


def test_sender_ids_of_two_channels_never_meet() -> None:
    # Google keeps its historical form; every other channel is prefixed by a name longer than a language.
    assert sender_id("en", "abc") == "en:abc"
    namespaces = [channel(load_settings()).namespace for channel in CHANNEL_TYPES.values()]
    senders = {sender_id("en", "rest:en:abc", ns) for ns in namespaces} | {
        sender_id("en", "abc", ns) for ns in namespaces
    }
    assert len(senders) == 2 * len(namespaces)


def test_unverified_channels_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.channels.registry")
    names = [c.name for c in enabled_channels(load_settings())]
    assert "google" in names
    for name in names:
        if name != "google":
            assert any(
                f"channel {name} " in r.getMessage() and "accepts unverified requests" in r.getMessage()
                for r in caplog.records
            )


def test_a_verified_deployment_serves_only_verified_channels(tmp_path: Path) -> None:
    jwks = tmp_path / "certs.json"
    jwks.write_text(json.dumps({"keys": [new_key().jwk()]}), encoding="utf-8")
    google = {"google.project_id": "my-actions-project", "google.jwks_file": str(jwks)}
    posts = served_posts(**google)
    assert "/webhook/google" in posts
    assert "/webhooks/rest/webhook" not in posts and "/webhook/dialogflow-cx" not in posts
    posts = served_posts(
        **google,
        **{
            "channels.rest.token": "0123456789abcdef0123",
            "channels.dialogflow_cx.headers": {"X-Secret": "v"},
        },
    )
    assert {"/webhooks/rest/webhook", "/webhook/dialogflow-cx"} <= posts
