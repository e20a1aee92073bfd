"""`gateway serve`: train missing bots, then serve webhooks until SIGTERM."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.commands.common import Subparsers, settings_from_args


def register(sub: Subparsers) -> None:
    """Add the `serve` parser."""
    parser = sub.add_parser("serve", help="train missing bots, then serve webhooks")
    parser.add_argument("--host", help="bind address (default from server.host)")
    parser.add_argument("--port", type=int, help="port (default from server.port)")
    parser.add_argument("--no-train", action="store_true", help="do not train missing bots")
    parser.add_argument(
        "--local-console",
        action="store_true",
        help="without admin.token: print a one-time console URL that works only from 127.0.0.1",
    )
    parser.add_argument(
        "--workers", type=int, help="worker processes sharing the port (default from server.workers)"
    )
    # Internal: set by the supervisor on the workers it starts.
    parser.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-dir", type=Path, help=argparse.SUPPRESS)  # roster, states, metrics
    parser.add_argument("--listen-when-ready", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests and close resources."""
    from gateway import logs, server
    from gateway.app import create_app
    from gateway.commands.train import train_langs

    overrides = {"server.host": args.host, "server.port": args.port, "server.workers": args.workers}
    settings = settings_from_args(args, **overrides)
    logs.configure(settings.logging)
    if args.worker_of is not None:
        from gateway.workers import become_worker

        become_worker(args.worker_of)
        app = create_app(settings)
        if args.worker_dir is not None:
            from gateway import exposition, worker_state

            exposition.use_worker_directory(args.worker_dir)
            worker_state.install(app, args.worker_dir, listen_when_ready=args.listen_when_ready)
        server.run(app, settings.server, reuse_port=True)
        return 0
    if settings.server.workers > 1:
        from gateway.workers import run_supervisor

        global_args = [
            *(["--config", args.config] if args.config else []),
            *(["--env", args.env] if args.env else []),
        ]
        return run_supervisor(settings, global_args, train=settings.train_missing and not args.no_train)
    if settings.train_missing and not args.no_train:
        train_langs(settings, "all")
    app = create_app(settings)
    if args.local_console and not settings.admin.token:
        from gateway.console import enable_local

        token = enable_local(app)
        # In the fragment: browsers never send it to the server, so no log or proxy sees it.
        port = settings.server.management_port or settings.server.port
        print(
            f"gateway: console (this run, from this machine only): http://127.0.0.1:{port}/console/#token={token}"
        )
    server.run(app, settings.server)
    return 0
