"""Subcommands of `gateway`: one module per command, each with `register(subparsers)`.

`register` adds the command's parser and sets `run=<function(args) -> exit code>` as its default;
adding a command means adding its module to COMMANDS.
"""

from __future__ import annotations

from gateway.commands import keygen, migrate_keys, models, pipeline, promote, publish, serve, test, train

COMMANDS = (serve, train, test, publish, models, promote, pipeline, keygen, migrate_keys)
