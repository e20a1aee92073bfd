"""Settings: defaults, precedence, and error messages that name the key, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import ROOT, load_settings


def test_defaults_are_embedded_mode() -> None:
    s = load_settings(env={})
    assert s.redis.url is None
    assert s.models.store == "local"
    assert s.server.port == 8080
    assert s.default_bot == "en"
    assert set(s.bots) == {"en", "pl", "de"}
    assert "de-AT" in s.bots["de"].locales
    assert s.bots["pl"].project_dir == ROOT / "bots" / "pl"
    assert s.channel_for("pl") == "gateway-pl"


def test_environment_overrides_any_key() -> None:
    s = load_settings(
        env={
            "GATEWAY_REDIS_URL": "redis://127.0.0.1:6390/2",
            "GATEWAY_SERVER_PORT": "9000",
            "GATEWAY_SERVER_DEADLINE_SECONDS": "2.5",
            "GATEWAY_LOGGING_USER_TEXT": "true",
            "GATEWAY_ADMIN_TOKEN": "s3cret-token-of-enough-length",
        }
    )
    assert s.redis.url == "redis://127.0.0.1:6390/2"
    assert s.server.port == 9000
    assert s.server.deadline_seconds == 2.5
    assert s.logging.user_text is True
    assert s.admin.token == "s3cret-token-of-enough-length"
    assert "s3cret" not in repr(s)  # secrets never reach logs via repr


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yml"
    cfg.write_text("server:\n  port: 7000\n  host: 127.0.0.1\nproject: shop\n")
    s = load_settings(cfg, env={"GATEWAY_SERVER_PORT": "7100"}, overrides={"server.host": "::1"})
    assert (s.project, s.server.port, s.server.host) == ("shop", 7100, "::1")
    assert s.channel_for("en") == "shop-en"
    assert s.server.deadline_seconds == 8.0  # untouched keys keep their defaults


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GATEWAY_SERVER_PORT": "eighty"}, "server.port='eighty': allowed an integer from 0 to 65535"),
        ({"GATEWAY_SERVER_PORT": "70000"}, "server.port=70000: allowed an integer from 0 to 65535"),
        ({"GATEWAY_REDIS_URL": "localhost:6379"}, "redis.url='localhost:6379': allowed a redis://"),
        ({"GATEWAY_ENVIRONMENT": "qa"}, "environment='qa': allowed one of staging, production"),
        ({"GATEWAY_BOTS_DEFAULT": "fr"}, "bots.default='fr': allowed one of the configured languages"),
        ({"GATEWAY_LOGGING_FORMAT": "xml"}, "logging.format='xml': allowed one of text, json"),
        ({"GATEWAY_SERVER_DEADLINE_SECONDS": "0"}, "server.deadline_seconds=0: allowed a number"),
        ({"GATEWAY_ADMIN_TOKEN": "short"}, "admin.token: too short"),
        ({"GATEWAY_LOGGING_USER_TEXT": "maybe"}, "logging.user_text='maybe': allowed true or false"),
    ],
)
def test_bad_values_name_key_value_and_allowed(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    assert message in str(info.value)


def test_bad_locale_in_file(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yml"
    cfg.write_text("bots:\n  languages:\n    en:\n      locales: [en-US, 'e n']\n")
    with pytest.raises(ConfigError, match=r"bots\.languages\.en\.locales='e n'"):
        load_settings(cfg, env={})


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*nope\.yml"):
        load_settings(tmp_path / "nope.yml", env={})
    bad = tmp_path / "bad.yml"
    bad.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yml is not valid YAML"):
        load_settings(bad, env={})


def test_unknown_env_names_are_ignored_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    s = load_settings(env={"GATEWAY_REDIS_UR": "redis://x"})
    assert s.redis.url is None
    assert "GATEWAY_REDIS_UR" in caplog.text


def test_cli_reports_config_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli import main

    monkeypatch.setenv("GATEWAY_SERVER_PORT", "-1")
    assert main(["serve", "--no-train"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and "server.port=-1" in err
