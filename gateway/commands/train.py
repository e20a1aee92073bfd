"""`gateway train <lang>|all`: train bots into models/<lang>/<stamp>-<hash12>.tar.gz."""

from __future__ import annotations

import argparse

from gateway.commands.common import Subparsers, config_name, say, select_langs, settings_from_args
from gateway.settings import Settings
from gateway.training import TrainedModel


def register(sub: Subparsers) -> None:
    """Add the `train` parser."""
    parser = sub.add_parser("train", help="train a bot (or all) into models/<lang>/")
    parser.add_argument("lang", help="language code, or 'all'")
    parser.add_argument("--force", action="store_true", help="train even when the model is current")
    parser.add_argument("--prod", action="store_true", help="use config.prod.yml (DIET/TED)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train the selected bots; exit 0 when every one has a current model."""
    from gateway import logs

    settings = settings_from_args(args)
    logs.configure(settings.logging)
    train_langs(settings, args.lang, force=args.force, prod=args.prod)
    return 0


def train_langs(
    settings: Settings, which: str, *, force: bool = False, prod: bool = False
) -> list[TrainedModel]:
    """Train `which` ('all' or a language) unless current, with one progress line per step."""
    from gateway.training import train_missing

    langs = select_langs(settings, which)
    bots = [(lang, settings.bots[lang].project_dir) for lang in langs]
    return train_missing(bots, settings.models_dir, force=force, config_name=config_name(prod), progress=say)
