"""Command line: `gateway serve|train|test|publish|models|activate|rollback|promote|pipeline`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gateway import exit_codes
from gateway.commands import COMMANDS
from gateway.commands.common import settings_from_args
from gateway.errors import ConfigError, GatewayError

__all__ = ["main", "settings_from_args"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    parser.add_argument("--config", help="YAML file merged over config/gateway.yml")
    parser.add_argument("--env", choices=("staging", "production"), help="environment namespace")
    sub = parser.add_subparsers(dest="command", required=True)
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
