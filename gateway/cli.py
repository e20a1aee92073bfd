"""Command line: `gateway serve`, `gateway train`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from gateway.errors import ConfigError, GatewayError
from gateway.settings import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    parser.add_argument("--config", help="YAML file merged over config/gateway.yml")
    parser.add_argument("--env", choices=("staging", "production"), help="environment namespace")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="train missing bots, then serve webhooks")
    serve.add_argument("--host", help="bind address (default from server.host)")
    serve.add_argument("--port", type=int, help="port (default from server.port)")
    serve.add_argument("--no-train", action="store_true", help="do not train missing bots")
    serve.add_argument(
        "--workers", type=int, help="worker processes sharing the port (default from server.workers)"
    )
    # Internal: set by the supervisor on the workers it starts.
    serve.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)

    train = sub.add_parser("train", help="train a bot (or all) into models/<lang>/")
    train.add_argument("lang", help="language code, or 'all'")
    train.add_argument("--force", action="store_true", help="train even when the model is current")
    train.add_argument("--prod", action="store_true", help="use config.prod.yml (DIET/TED)")
    return parser


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Settings from defaults, --config, GATEWAY_* environment and flags."""
    config = args.config or os.environ.get("GATEWAY_CONFIG")
    return load_settings(config, os.environ, {"environment": args.env, **overrides})


def _quiet_libraries() -> None:
    """TensorFlow, Rasa and friends print pages of import-time notices that are not ours to fix."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"rasa\..*")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gateway` console script."""
    args = _parser().parse_args(argv)
    _quiet_libraries()
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "train":
            return _train(args)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


def _train_langs(settings: Settings, which: str, *, force: bool = False, prod: bool = False) -> None:
    from gateway.training import train_missing

    if which == "all":
        langs = list(settings.bots)
    elif which in settings.bots:
        langs = [which]
    else:
        raise ConfigError(f"unknown language {which!r}: configured are {', '.join(settings.bots)}")
    bots = [(lang, settings.bots[lang].project_dir) for lang in langs]
    config_name = "config.prod.yml" if prod else "config.yml"
    train_missing(bots, settings.models_dir, force=force, config_name=config_name)


def _train(args: argparse.Namespace) -> int:
    from gateway import logs

    settings = settings_from_args(args)
    logs.configure(settings.logging)
    _train_langs(settings, args.lang, force=args.force, prod=args.prod)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from gateway import logs

    overrides = {"server.host": args.host, "server.port": args.port, "server.workers": args.workers}
    settings = settings_from_args(args, **overrides)
    logs.configure(settings.logging)
    if args.worker_of is not None:
        from gateway.workers import become_worker

        become_worker(args.worker_of)
        _run_server(settings, reuse_port=True)
        return 0
    if settings.server.workers > 1:
        from gateway.workers import run_supervisor

        globals_ = [
            *(["--config", args.config] if args.config else []),
            *(["--env", args.env] if args.env else []),
        ]
        return run_supervisor(settings, globals_, train=settings.train_missing and not args.no_train)
    if settings.train_missing and not args.no_train:
        _train_langs(settings, "all")
    _run_server(settings, reuse_port=False)
    return 0


def _run_server(settings: Settings, *, reuse_port: bool) -> None:
    from aiohttp import web

    from gateway.app import create_app

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # uvloop is optional on platforms without it
        pass
    if not reuse_port:
        print(f"gateway: serving on http://{settings.server.host}:{settings.server.port}", flush=True)
    web.run_app(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        reuse_port=reuse_port,
        shutdown_timeout=settings.server.shutdown_timeout_seconds,
        print=None,
        access_log=None,
    )
