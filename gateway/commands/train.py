"""`gateway train <lang>|all`: train bots into models/<lang>/<stamp>-<hash12>.tar.gz."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.commands.common import (
    Subparsers,
    add_sign_key,
    config_name,
    say,
    select_langs,
    settings_from_args,
)
from gateway.settings import Settings
from gateway.training import TrainedModel


def register(sub: Subparsers) -> None:
    """Add the `train` parser."""
    parser = sub.add_parser("train", help="train a bot (or all) into models/<lang>/")
    parser.add_argument("lang", help="language code, or 'all'")
    parser.add_argument("--force", action="store_true", help="train even when the model is current")
    parser.add_argument("--prod", action="store_true", help="use config.prod.yml (DIET/TED)")
    add_sign_key(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train the selected bots; exit 0 when every one has a current model."""
    from gateway import logs

    settings = settings_from_args(args)
    logs.configure(settings.logging)
    train_langs(settings, args.lang, force=args.force, prod=args.prod, sign_key=args.sign_key)
    return 0


def train_langs(
    settings: Settings,
    which: str,
    *,
    force: bool = False,
    prod: bool = False,
    sign_key: Path | None = None,
) -> list[TrainedModel]:
    """Train `which` ('all' or a language) unless current, with one progress line per step.

    With a signing key (`sign_key`, models.signing_key_file or models.hmac_key) each model gets a
    `<model>.sig` beside it when trained, or when it has none yet.
    """
    from gateway.agents.archive import recorded_signature, sign_archive
    from gateway.agents.signing import signer_for
    from gateway.training import train_missing

    signer = signer_for(settings.models, sign_key)  # before minutes of training: a bad key fails now
    langs = select_langs(settings, which)
    bots = [(lang, settings.bots[lang].project_dir) for lang in langs]
    models = train_missing(
        bots, settings.models_dir, force=force, config_name=config_name(prod), progress=say
    )
    if signer is not None:
        for model in models:
            if model.trained or sign_key is not None or recorded_signature(model.path) is None:
                sign_archive(model.path, model.lang, signer)
                say(f"{model.lang}: signed {model.path.name} with key {signer.key_id}")
    return models
