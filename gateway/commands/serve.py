"""`gateway serve`: train missing bots, then serve webhooks until SIGTERM."""

from __future__ import annotations

import argparse

from gateway.commands.common import Subparsers, settings_from_args


def register(sub: Subparsers) -> None:
    """Add the `serve` parser."""
    parser = sub.add_parser("serve", help="train missing bots, then serve webhooks")
    parser.add_argument("--host", help="bind address (default from server.host)")
    parser.add_argument("--port", type=int, help="port (default from server.port)")
    parser.add_argument("--no-train", action="store_true", help="do not train missing bots")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests and close resources."""
    from gateway import logs, server
    from gateway.app import create_app
    from gateway.commands.train import train_langs

    settings = settings_from_args(args, **{"server.host": args.host, "server.port": args.port})
    logs.configure(settings.logging)
    if settings.train_missing and not args.no_train:
        train_langs(settings, "all")
    server.run(create_app(settings), settings.server)
    return 0
