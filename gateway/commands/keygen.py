"""`gateway keygen FILE`: a new Ed25519 key pair for signing models (FILE private, FILE.pub public)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.commands.common import Subparsers, say


def register(sub: Subparsers) -> None:
    """Add the `keygen` parser."""
    parser = sub.add_parser(
        "keygen",
        help="write a new Ed25519 key pair for signing models",
        description="Writes the private key to FILE (PEM, mode 0600: publishers only, e.g. a CI secret) and "
        "the public key to FILE.pub (gateways: models.verify_key_file). Never overwrites a file.",
    )
    parser.add_argument("file", type=Path, help="where to write the private key, e.g. model-signing.pem")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Generate and write the pair; print the key id and where each half goes."""
    from gateway.agents.signing import generate_key_pair

    private: Path = args.file
    public = private.with_name(private.name + ".pub")
    kid = generate_key_pair(private, public)
    say(f"key {kid}: private key {private} (mode 0600), public key {public}")
    say(f"  publishers (train, publish, promote): models.signing_key_file={private} or --sign-key {private}")
    say(f"  gateways: models.verify_key_file={public} (append it to the old key's file to rotate keys)")
    return 0
