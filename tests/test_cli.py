"""The command line: --config and --env work before and after the command (README's own syntax)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import _parser, main


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "x.yml", "--env", "staging", "serve"],
        ["serve", "--config", "x.yml", "--env", "staging"],
        ["--config", "x.yml", "serve", "--env", "staging"],
        ["--env", "staging", "publish", "pl", "--config", "x.yml"],
        ["publish", "--config", "x.yml", "pl", "--env", "staging"],
    ],
)
def test_global_options_before_or_after_the_command(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    assert (args.config, args.env) == ("x.yml", "staging")


def test_global_options_default_to_none_and_the_last_one_wins() -> None:
    parser = _parser()
    args = parser.parse_args(["models", "pl"])
    assert (args.config, args.env) == (None, None)
    args = parser.parse_args(["--env", "production", "models", "pl", "--env", "staging"])
    assert args.env == "staging"


@pytest.mark.parametrize("before", [True, False])
def test_serve_reads_the_config_file_given_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], before: bool
) -> None:
    config = tmp_path / "x.yml"
    config.write_text("server:\n  port: eighty\n")
    options = ["--config", str(config)]
    argv = [*options, "serve", "--no-train"] if before else ["serve", "--no-train", *options]
    assert main(argv) == 2  # the file was read: its bad port stops the command before it serves
    assert "invalid setting server.port='eighty'" in capsys.readouterr().err
