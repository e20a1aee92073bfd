"""`gateway pipeline [--since REV]`: CI entry point; train and test (then publish) only the changed bots."""

from __future__ import annotations

import argparse

from gateway.commands.common import Subparsers, config_name, say, select_langs, settings_from_args


def register(sub: Subparsers) -> None:
    """Add the `pipeline` parser."""
    parser = sub.add_parser(
        "pipeline",
        help="train and test the bots changed since a revision, stopping at the first failure",
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
    done = run_pipeline(settings, langs, config_name=config_name(args.prod), publish=None, progress=say)
    say(f"pipeline: passed {', '.join(c.lang for c in done)}; publishing is not wired in yet")
    return 0
