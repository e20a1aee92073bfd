"""`gateway publish <lang> [MODEL]`: upload a tested model, make it active and announce it."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from gateway.commands.common import (
    Subparsers,
    add_sign_key,
    config_name,
    say,
    select_langs,
    settings_from_args,
)
from gateway.errors import ModelNotFound
from gateway.settings import Settings


def register(sub: Subparsers) -> None:
    """Add the `publish` parser."""
    parser = sub.add_parser(
        "publish",
        help="upload a tested model to the store, make it active and announce it",
        description="Uploads MODEL (default: the bot's current model) with its sha256 and test record to "
        "this environment's model store, records it as the active model in Redis and publishes the event. "
        "Refuses a model whose `gateway test` verdict is missing, failed or stale, unless --force. "
        "Signs it with --sign-key (or models.signing_key_file / models.hmac_key), else uploads the "
        "signature `gateway train` left beside it (<model>.sig).",
    )
    parser.add_argument("lang", help="language code")
    parser.add_argument("model", nargs="?", help="archive path, or a file name in models/<lang>/")
    parser.add_argument("--force", action="store_true", help="publish even without a passing test record")
    parser.add_argument(
        "--prod", action="store_true", help="default to the model trained from config.prod.yml"
    )
    add_sign_key(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Publish one model of one language."""
    from gateway import logs
    from gateway.delivery.evaluation import model_to_test

    settings = settings_from_args(args)
    logs.configure(settings.logging)
    (lang,) = select_langs(settings, [args.lang])
    if args.model is None:
        model = model_to_test(settings, lang, config_name(args.prod))
    else:
        model = local_model(settings, lang, args.model)
    asyncio.run(publish(settings, lang, model, force=args.force, sign_key=args.sign_key))
    return 0


def local_model(settings: Settings, lang: str, given: str) -> Path:
    """`given` as a path, else as a file name in models/<lang>/; ModelNotFound listing what exists."""
    path = Path(given)
    if path.is_file():
        return path.resolve()
    folder = settings.models_dir / lang
    if path.name == given and (folder / given).is_file():
        return (folder / given).resolve()
    found = sorted(p.name for p in folder.glob("*.tar.gz")) if folder.is_dir() else []
    listed = ", ".join(found) if found else f"none (run `gateway train {lang}`)"
    raise ModelNotFound(f"model {given} not found: no such file, nor in {folder}; trained there: {listed}")


async def publish(
    settings: Settings, lang: str, model: Path, *, force: bool = False, sign_key: Path | None = None
) -> None:
    """Upload, sign, activate and announce `model`, with progress lines."""
    from gateway.agents.signing import signer_for
    from gateway.delivery.records import read_record
    from gateway.delivery.release import release, where

    record = read_record(model)
    signer = signer_for(settings.models, sign_key)
    async with release(settings) as target:
        say(f"{lang}: publishing {model.name} to {where(settings, lang)} ({settings.environment})")
        info = await target.publish(lang, model, record, force=force, signer=signer)
        if info.signature is None:
            say(f"{lang}: {info.name} is unsigned (no --sign-key, models.signing_key_file or hmac_key)")
        elif signer is not None:
            say(f"{lang}: signed {info.name} with key {signer.key_id}")
        if force and (record is None or not record.passed):
            say(f"{lang}: WARNING: published without a passing test record (--force)")
        say(
            f"{lang}: {info.name} is active in {settings.environment} (sha256 {info.sha256}); announced on "
            f"{settings.channel_for(lang)}"
        )
