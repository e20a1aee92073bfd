"""`gateway models|activate|rollback <lang>`: the stored models of an environment and its active one."""

from __future__ import annotations

import argparse
import asyncio
import time

from gateway.commands.common import Subparsers, say, select_langs, settings_from_args
from gateway.settings import Settings


def register(sub: Subparsers) -> None:
    """Add the `models`, `activate` and `rollback` parsers."""
    listing = sub.add_parser("models", help="list a language's stored models (* = active)")
    listing.add_argument("lang", help="language code")
    listing.set_defaults(run=run_models)
    activate = sub.add_parser("activate", help="make a stored model the active one and announce it")
    activate.add_argument("lang", help="language code")
    activate.add_argument("model", help="archive name in the store (see `gateway models <lang>`)")
    activate.set_defaults(run=run_activate)
    rollback = sub.add_parser("rollback", help="go back to the model active before the current one")
    rollback.add_argument("lang", help="language code")
    rollback.set_defaults(run=run_rollback)


def _setup(args: argparse.Namespace) -> tuple[Settings, str]:
    from gateway import logs

    settings = settings_from_args(args)
    logs.configure(settings.logging)
    (lang,) = select_langs(settings, [args.lang])
    return settings, lang


def run_models(args: argparse.Namespace) -> int:
    """Print the table of stored models."""
    settings, lang = _setup(args)
    asyncio.run(list_models(settings, lang))
    return 0


async def list_models(settings: Settings, lang: str) -> None:
    """One line per stored archive: active marker, name, size, upload time, sha256."""
    from gateway.delivery.release import release, where

    async with release(settings) as env:
        stored = await env.list_models(lang)
        record = await env.current(lang)
    active = record.current.model if record else None
    say(f"{lang} models in {where(settings, lang)} ({settings.environment}):")
    if not stored:
        say(f"  none yet: run `gateway --env {settings.environment} publish {lang}`")
        return
    say(f"  {'':1} {'MODEL':<48} {'SIZE':>9}  {'UPLOADED (UTC)':<19}  SHA256")
    for info in stored:
        mark = "*" if info.name == active else " "
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info.modified))
        say(f"  {mark} {info.name:<48} {info.size / 1e6:>6.1f} MB  {stamp:<19}  {info.sha256 or '-'}")
    if active is not None and active not in {info.name for info in stored}:
        say(f"  (the active model {active} is not in the store)")


def run_activate(args: argparse.Namespace) -> int:
    """Activate a stored model."""
    settings, lang = _setup(args)
    asyncio.run(activate(settings, lang, args.model))
    return 0


async def activate(settings: Settings, lang: str, name: str) -> None:
    """Record `name` as active (it must be in the store) and announce it."""
    from gateway.delivery.release import release

    async with release(settings) as env:
        info = await env.find(lang, name)
        await env.activate(lang, info)
    say(f"{lang}: {info.name} is active in {settings.environment}; announced on {settings.channel_for(lang)}")


def run_rollback(args: argparse.Namespace) -> int:
    """Roll back one model."""
    settings, lang = _setup(args)
    asyncio.run(rollback(settings, lang))
    return 0


async def rollback(settings: Settings, lang: str) -> None:
    """Go back one model in the durable history and announce it."""
    from gateway.delivery.release import release

    async with release(settings) as env:
        record = await env.rollback(lang)
    say(f"{lang}: rolled back to {record.current.model} in {settings.environment}")
