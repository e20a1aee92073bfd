"""`gateway pipeline [--since REV]`: CI entry point; train, test and publish only the changed bots."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from gateway.commands.common import Subparsers, config_name, say, select_langs, settings_from_args
from gateway.delivery.pipeline import Candidate
from gateway.settings import Settings


def register(sub: Subparsers) -> None:
    """Add the `pipeline` parser."""
    parser = sub.add_parser(
        "pipeline",
        help="train, test and publish the bots changed since a revision, stopping at the first failure",
    )
    parser.add_argument(
        "--since",
        metavar="REV",
        help="git revision to compare with (changes in REV...HEAD plus uncommitted ones); default: every bot",
    )
    parser.add_argument(
        "--lang",
        action="append",
        help="only consider this language (repeatable; CI runs one job per language)",
    )
    parser.add_argument("--prod", action="store_true", help="train and test with config.prod.yml")
    parser.add_argument(
        "--no-publish", action="store_true", help="stop after the tests (no store or Redis needed)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the pipeline over the selected, changed bots; exit 1 at the first failure."""
    from gateway import logs
    from gateway.delivery.changes import changed_languages
    from gateway.delivery.pipeline import run_pipeline

    settings = settings_from_args(args)
    logs.configure(settings.logging)
    langs = select_langs(settings, args.lang)
    if args.since is not None:
        changed = changed_languages(settings.bots_dir, langs, args.since)
        for lang in langs:
            files = changed.get(lang, [])
            more = " ..." if len(files) > 5 else ""
            listed = f"changed: {', '.join(files[:5])}{more}" if files else f"unchanged since {args.since}"
            say(f"{lang}: {listed}")
        langs = [lang for lang in langs if lang in changed]
    if not langs:
        say("pipeline: no bot changed; nothing to do")
        return 0
    say(f"pipeline: {', '.join(langs)} (environment {settings.environment})")
    if not args.no_publish:
        # Before minutes of training: a store or Redis that cannot be reached fails the job at once.
        asyncio.run(_preflight(settings, langs))
    publish = None if args.no_publish else publish_candidate
    done = run_pipeline(settings, langs, config_name=config_name(args.prod), publish=publish, progress=say)
    verb = "tested (not published)" if args.no_publish else "published"
    say(f"pipeline: {verb} {', '.join(c.lang for c in done)} in {settings.environment}")
    return 0


async def _preflight(settings: Settings, langs: Sequence[str]) -> None:
    from gateway.delivery.release import release

    async with release(settings) as target:
        for lang in langs:
            await target.list_models(lang)


def publish_candidate(settings: Settings, candidate: Candidate) -> None:
    """Publish a model that passed its tests (the pipeline's publish step)."""
    from gateway.commands.publish import publish

    asyncio.run(publish(settings, candidate.lang, candidate.model))
