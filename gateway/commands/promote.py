"""`gateway promote <lang> --from staging --to production`: ship what staging runs to production."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses

from gateway.commands.common import Subparsers, add_sign_key, say, select_langs, settings_from_args
from gateway.errors import ConfigError

ENVIRONMENTS = ("staging", "production")


def register(sub: Subparsers) -> None:
    """Add the `promote` parser."""
    parser = sub.add_parser(
        "promote",
        help="copy the active model of one environment into another and make it active there",
        description="Copies the active model of --from (bytes, sha256, test record and signature) into the "
        "model store of --to, records it as active there and announces it on --to's channel. With "
        "--sign-key (or models.signing_key_file) the copy is signed anew.",
    )
    parser.add_argument("lang", help="language code")
    parser.add_argument("--from", dest="source", choices=ENVIRONMENTS, default="staging")
    parser.add_argument("--to", dest="target", choices=ENVIRONMENTS, default="production")
    parser.add_argument("--force", action="store_true", help="promote even without a passing test record")
    add_sign_key(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Promote one language."""
    from gateway import logs
    from gateway.agents.signing import signer_for
    from gateway.delivery.release import promote, where

    if args.source == args.target:
        raise ConfigError(f"--from and --to are both {args.source}: promote between two environments")
    base = settings_from_args(args)
    logs.configure(base.logging)
    (lang,) = select_langs(base, [args.lang])
    source = dataclasses.replace(base, environment=args.source)
    target = dataclasses.replace(base, environment=args.target)
    signer = signer_for(base.models, args.sign_key) if args.sign_key or base.models.signing_key_file else None
    info = asyncio.run(promote(source, target, lang, force=args.force, signer=signer))
    say(
        f"{lang}: promoted {info.name} (sha256 {info.sha256}) from {args.source} to {args.target} "
        f"({where(target, lang)}); announced on {target.channel_for(lang)}"
    )
    return 0
