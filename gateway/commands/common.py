"""Helpers shared by the commands: settings from flags, language selection, progress lines."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError
from gateway.settings import Settings, load_settings

if TYPE_CHECKING:
    # argparse's private type, spelled once; generic only to type checkers.
    from typing import TypeAlias

    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Settings from defaults, --config, GATEWAY_* environment and flags."""
    config = args.config or os.environ.get("GATEWAY_CONFIG")
    return load_settings(config, os.environ, {"environment": args.env, **overrides})


def select_langs(settings: Settings, which: str | list[str] | None) -> list[str]:
    """Configured languages named by `which` ('all' or None = every one), in configuration order."""
    if which is None or which == "all" or which == ["all"]:
        return list(settings.bots)
    names = [which] if isinstance(which, str) else which
    unknown = [name for name in names if name not in settings.bots]
    if unknown:
        raise ConfigError(
            f"unknown language {unknown[0]!r}: configured are {', '.join(settings.bots)} "
            "(bots.languages in config/gateway.yml)"
        )
    return [lang for lang in settings.bots if lang in names]


def add_sign_key(parser: argparse.ArgumentParser) -> None:
    """The `--sign-key FILE` option of the commands that sign models."""
    parser.add_argument(
        "--sign-key",
        type=Path,
        metavar="FILE",
        help="Ed25519 private key (PEM, from `gateway keygen`) that signs the model; default "
        "models.signing_key_file, else models.hmac_key, else unsigned",
    )


def config_name(prod: bool) -> str:
    """The bot config a command trains or tests with."""
    return "config.prod.yml" if prod else "config.yml"


def say(line: str) -> None:
    """One progress line on stdout, flushed at once (CI logs are pipes); a JSON record in JSON mode."""
    from gateway import logs

    logs.progress(line)
