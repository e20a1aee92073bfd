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
        ({"GATEWAY_SERVER_DEADLINE_SECONDS": "0"}, "server.deadline_seconds=0.0: allowed a number"),
        ({"GATEWAY_ADMIN_TOKEN": "short"}, "admin.token: too short"),
        ({"GATEWAY_LOGGING_USER_TEXT": "maybe"}, "logging.user_text='maybe': allowed true or false"),
        ({"GATEWAY_SERVER_REPLICA_NAME": "pod a:1"}, "server.replica_name='pod a:1': allowed 1..100 letters"),
        ({"GATEWAY_SERVER_HEARTBEAT_SECONDS": "0"}, "server.heartbeat_seconds=0.0: allowed a number"),
    ],
)
def test_bad_values_name_key_value_and_allowed(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("name", "text", "key", "expected"),
    [
        # Secrets and other strings are kept exactly: YAML would read these as numbers or null.
        ("GATEWAY_ADMIN_TOKEN", "1234_5678_9012_3456_7890", ("admin", "token"), "1234_5678_9012_3456_7890"),
        ("GATEWAY_MODELS_HMAC_KEY", "0x1234567890abcdef00", ("models", "hmac_key"), "0x1234567890abcdef00"),
        ("GATEWAY_ADMIN_TOKEN", "null-but-long-enough", ("admin", "token"), "null-but-long-enough"),
        ("GATEWAY_GOOGLE_PROJECT_ID", "null", ("google", "project_id"), "null"),
        ("GATEWAY_GOOGLE_PROJECT_ID", "~", ("google", "project_id"), "~"),
        ("GATEWAY_GOOGLE_PROJECT_ID", "0123", ("google", "project_id"), "0123"),
        ("GATEWAY_GOOGLE_PROJECT_ID", "yes", ("google", "project_id"), "yes"),
        ("GATEWAY_PROJECT", "1e3", ("project",), "1e3"),
        ("GATEWAY_MODELS_S3_SECRET_ACCESS_KEY", " spaced secret ", ("models", "s3_secret_access_key"),
         " spaced secret "),
        # Numbers and booleans by their declared type.
        ("GATEWAY_SERVER_PORT", "+8081", ("server", "port"), 8081),
        ("GATEWAY_SERVER_DEADLINE_SECONDS", "3", ("server", "deadline_seconds"), 3.0),
        ("GATEWAY_SERVER_DEADLINE_SECONDS", ".5e1", ("server", "deadline_seconds"), 5.0),
        ("GATEWAY_LOGGING_USER_TEXT", "YES", ("logging", "user_text"), True),
        ("GATEWAY_LOGGING_USER_TEXT", "0", ("logging", "user_text"), False),
        ("GATEWAY_SERVER_REPLICA_NAME", "web-7f9c.eu_1", ("server", "replica_name"), "web-7f9c.eu_1"),
        ("GATEWAY_SERVER_HEARTBEAT_SECONDS", "0.5", ("server", "heartbeat_seconds"), 0.5),
        # An empty value unsets an optional setting.
        ("GATEWAY_REDIS_URL", "", ("redis", "url"), None),
    ],
)  # fmt: skip
def test_environment_values_are_parsed_by_the_settings_type(
    name: str, text: str, key: tuple[str, ...], expected: object
) -> None:
    base = {"GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0"} if name == "GATEWAY_REDIS_URL" else {}
    value: object = load_settings(env={**base, name: text})
    for part in key:
        value = getattr(value, part)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("GATEWAY_SERVER_PORT", "8_080", "port='8_080': allowed an integer from 0 to 65535 (from GATEWAY_S"),
        ("GATEWAY_SERVER_PORT", "0x1f90", "server.port='0x1f90': allowed an integer"),
        ("GATEWAY_SERVER_PORT", "", "port='': allowed an integer from 0 to 65535 (from GATEWAY_SERVER_PORT)"),
        ("GATEWAY_SERVER_PORT", "null", "server.port='null': allowed an integer"),
        ("GATEWAY_SERVER_DEADLINE_SECONDS", "nan", "server.deadline_seconds='nan': allowed a number"),
        ("GATEWAY_SERVER_DEADLINE_SECONDS", "1_0", "server.deadline_seconds='1_0': allowed a number"),
        ("GATEWAY_LOGGING_USER_TEXT", "~", "logging.user_text='~': allowed true or false"),
        ("GATEWAY_REDIS_URL", "null", "redis.url='null': allowed a redis://"),
        ("GATEWAY_PROJECT", "", "project='': allowed a non-empty string (an empty value only unsets"),
        ("GATEWAY_MONITOR_INTERVAL_SECONDS", "ten", "(from GATEWAY_MONITOR_INTERVAL_SECONDS)"),
    ],
)  # fmt: skip
def test_bad_environment_values_name_the_variable(name: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={name: text})
    assert message in str(info.value)


def test_errors_never_show_a_secret_value(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yml"
    cfg.write_text("admin:\n  token: [not, a, string, s3cret-list-item]\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env={})
    assert "s3cret" not in str(info.value)
    assert "admin.token=<secret" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_settings(env={"GATEWAY_MODELS_HMAC_KEY": "", "GATEWAY_ADMIN_TOKEN": "short-s3cret"})
    assert "s3cret" not in str(info.value)


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
