"""`gateway migrate-keys`: move conversations from the key layout before hash tags to the current one."""

from __future__ import annotations

import argparse
import asyncio

from gateway.commands.common import Subparsers, say, select_langs, settings_from_args
from gateway.errors import ConfigError
from gateway.settings import Settings


def register(sub: Subparsers) -> None:
    """Add the `migrate-keys` parser."""
    parser = sub.add_parser(
        "migrate-keys",
        help="move conversations stored under the old Redis key layout to the current one",
        description="Moves every {prefix}:{env}:{lang}:tracker:{sender} key of the environment to "
        "{prefix}:{env}:{lang}:{{sender}}:tracker with its remaining TTL (SCAN, never KEYS). Safe to run "
        "again: an interrupted run is finished, moved keys are not touched. Run it once the gateways "
        "of the old version are stopped (see README, Conversation state).",
    )
    parser.add_argument("langs", nargs="*", default=None, help="language codes (default: every bot)")
    parser.add_argument("--dry-run", action="store_true", help="only count the old-layout keys")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Migrate; exit 1 when keys changed during the run (old gateways still running)."""
    from gateway import logs

    settings = settings_from_args(args)
    logs.configure(settings.logging)
    langs = select_langs(settings, args.langs or None)
    return asyncio.run(migrate(settings, langs, args.dry_run))


async def migrate(settings: Settings, langs: list[str], dry_run: bool) -> int:
    """Run the migration against the configured Redis and print what it did."""
    from gateway.storage import redis_client
    from gateway.storage.migrate_keys import migrate_keys

    url = settings.redis.url
    if url is None:
        raise ConfigError("migrate-keys needs Redis: set redis.url (GATEWAY_REDIS_URL)")
    client = redis_client.make_client(url, settings.redis.socket_timeout_seconds, settings.redis.cluster)
    where = redis_client._redacted(url)
    try:
        verb = "counting" if dry_run else "migrating"
        say(f"{verb} old-layout conversation keys of {settings.environment} ({', '.join(langs)}) at {where}")
        report = await migrate_keys(client, settings, langs, say, dry_run=dry_run)
    finally:
        await redis_client.close_client(client)
    if dry_run:
        say(f"{report.found} keys would move; run without --dry-run to move them")
        return 0
    say(f"done: {report.summary()}")
    if report.kept:
        say(
            f"  {report.kept} old keys kept: their conversation had started again under the new layout; "
            "they expire with their TTL"
        )
    if report.changed:
        say(
            f"  {report.changed} keys were written during their move (is an old gateway still running?): "
            "stop the old gateways and run migrate-keys again"
        )
        return 1
    return 0
