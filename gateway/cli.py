"""Command line: `gateway serve|train|test|publish|models|activate|rollback|promote|pipeline|migrate-keys`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
    """Entry point of the `gateway` console script."""
    from gateway import logs

    args = _parser().parse_args(argv)
    logs.quiet_libraries()
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
