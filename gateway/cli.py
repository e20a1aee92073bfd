"""Command line: `gateway <command>` (serve, train, test, the release commands, keygen, migrate-keys)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from gateway import exit_codes
from gateway.commands import COMMANDS
from gateway.commands.common import Subparsers, settings_from_args
from gateway.errors import ConfigError, GatewayError

__all__ = ["main", "settings_from_args"]


def _global_options(default: Any) -> argparse.ArgumentParser:
    """--config and --env, for `parents=`: accepted before the command and after it."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--config", default=default, help="YAML file merged over config/gateway.yml")
    options.add_argument(
        "--env", choices=("staging", "production"), default=default, help="environment namespace"
    )
    return options


class _Commands(Subparsers):
    """The subcommands' action: every command's parser gets --config and --env via `parents=`.

    Their copies default to SUPPRESS: an option given before the command is not reset to None by the
    command's parser (argparse applies a subparser's defaults over the main parser's values).
    """

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs["parents"] = [*kwargs.get("parents", ()), _global_options(argparse.SUPPRESS)]
        return super().add_parser(name, **kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__, parents=[_global_options(None)])
    sub = parser.add_subparsers(dest="command", required=True, action=_Commands)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gateway` console script; exit codes in gateway/exit_codes.py."""
    from gateway import logs

    logs.quiet_libraries()  # before anything imports TensorFlow
    args = _parser().parse_args(argv)  # usage errors exit 2 here
    try:
        return int(args.run(args))
    except ConfigError as exc:
        logs.fatal(f"configuration error: {exc}")
        return exit_codes.USAGE
    except GatewayError as exc:
        logs.fatal(str(exc))
        return exit_codes.for_error(exc)
    except KeyboardInterrupt:
        return 130
