"""Every command line in README.md's ```sh blocks runs (or is checked) here, so the README cannot rot.

How each kind of line is run, and why:
- `gateway ...` lines that are real commands run as written (`python -m gateway` from this checkout,
  in a scratch folder) in order, against a harness: a temporary config (GATEWAY_CONFIG), a copy of the
  cached models, a temporary model store, a private redis-server, and a production environment that
  already had a model (so `rollback` has somewhere to go back to). `<placeholders>` are filled in from
  PLACEHOLDERS. The NLU cross-validation is off (delivery.nlu_folds=0): its gate has its own tests, and
  it would only make `gateway test` slower here.
  A `gateway serve ...` line is started on a free port, must become ready, and must stop cleanly on
  SIGTERM. Leading `NAME=value` words set that command's environment; `python -m gateway` is `gateway`.
- `gateway ...` synopsis lines (with `[optional]` parts or `a|b` alternatives) are templates, not
  commands: every command they name must exist and accept every option they list (the real parser).
- `make ...` lines run as `make -n` (a dry run: `make run`/`make test` would reinstall the shared virtualenv
  and run for minutes), and every `python -m gateway|bench ...` line make would run is parsed by that
  module's own argument parser, so `make bench ARGS="--actions"` fails while bench has no --actions.
  `[ARGS=...]` is checked without and with the bracketed part.
- `curl ...` lines run against the session's gateway (localhost:8080 becomes its port) and must answer
  JSON without an "error".
- `redis-cli ...` lines run against a private redis-server.
- `ngrok ...` is not run (it needs an ngrok account and the internet); the port it forwards must be the
  gateway's default port.
A line whose first word has no runner fails with a message saying how to add one (RUNNERS below).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from gateway.settings import ROOT, load_settings
from gateway.training import current_model
from tests.support import GatewayProcess, RedisServer, free_port

README = ROOT / "README.md"
SHELL_FENCES = ("```sh", "```bash", "```shell")
LANGS = ("en", "pl", "de")
THIS_FILE = "tests/test_readme_commands.py"


@dataclass(frozen=True)
class Line:
    """One command of a ```sh block: where it starts in the README, its text and its words."""

    number: int
    text: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict, compare=False)  # from leading NAME=value words

    def where(self) -> str:
        return f"README.md:{self.number}: `{' '.join(self.argv)}`"


def shell_lines(markdown: str) -> list[Line]:
    """The commands of every ```sh block (comments dropped; a quoted argument may span lines)."""
    out: list[Line] = []
    fence: str | None = None
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(markdown.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("```") and pending is None:
            fence = None if fence is not None else stripped
            continue
        if fence not in SHELL_FENCES or (pending is None and not stripped):
            continue
        start, text = pending if pending is not None else (number, "")
        text = f"{text}\n{raw}" if text else raw
        try:
            argv = shlex.split(text, comments=True)
        except ValueError:  # an open quote: the argument goes on on the next line
            pending = (start, text)
            continue
        if text.rstrip().endswith("\\"):
            pending = (start, text.rstrip()[:-1])
            continue
        pending = None
        if argv:
            out.append(Line(start, text, tuple(argv)))
    assert pending is None, f"README.md:{pending[0]}: unterminated command (open quote or trailing \\)"
    return out


def is_synopsis(argv: tuple[str, ...]) -> bool:
    """A usage template (`[--flag X]`, `a|b`) rather than a command to run."""
    return any("[" in word or "|" in word for word in argv)


@dataclass
class Harness:
    """What the README's commands need: a scratch folder, config, models, model store, Redis, a gateway."""

    workdir: Path
    config: Path
    redis: RedisServer
    gateway: GatewayProcess | None
    env: dict[str, str]
    failures: list[str] = field(default_factory=list)

    def fail(self, line: Line, why: str) -> None:
        self.failures.append(f"{line.where()}\n    {why}")


def current_name(lang: str, cache: Path) -> str:
    model = current_model(ROOT / "bots" / lang, cache / lang)
    assert model is not None, f"no current {lang} model in {cache}"
    return model.name


def placeholders(line: Line, harness: Harness) -> dict[str, Callable[[], str]]:
    """Values for the <placeholders> a runnable README line may use (computed when used)."""
    lang = next((word for word in line.argv if word in LANGS), "en")
    return {
        "<lang>": lambda: lang,
        "<name>": lambda: current_name(lang, harness.workdir / "models").removesuffix(".tar.gz"),
    }


def fill(line: Line, harness: Harness) -> list[str] | None:
    values = placeholders(line, harness)
    argv = []
    for word in line.argv:
        for key, value in values.items():
            if key in word:
                word = word.replace(key, value())
        unknown = re.findall(r"<[^<>\s]+>", word)
        if unknown:
            harness.fail(line, f"unknown placeholder {unknown[0]}: add it to placeholders() in {THIS_FILE}")
            return None
        argv.append(word)
    return argv


# --- gateway -------------------------------------------------------------------------------------------


def _commands() -> dict[str, object]:
    from gateway.cli import _parser

    parser = _parser()
    sub = parser._subparsers
    assert sub is not None
    return dict(sub._group_actions[0].choices)  # type: ignore[attr-defined]


def check_gateway_synopsis(line: Line, harness: Harness) -> None:
    """Each command the template names exists and takes every --option it lists."""
    words = list(line.argv[1:])
    while words and words[0].startswith("-"):  # options before the command: --config FILE, --env E
        words.pop(0)
    if not words:
        harness.fail(line, "no command named")
        return
    commands = _commands()
    options = [opt for word in words[1:] for opt in re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", word)]
    for name in words[0].split("|"):
        parser = commands.get(name)
        if parser is None:
            harness.fail(line, f"`gateway {name}` is not a command (known: {', '.join(commands)})")
            continue
        known = parser._option_string_actions  # type: ignore[attr-defined]
        for option in options:
            if option not in known:
                harness.fail(line, f"`gateway {name}` does not accept {option}")


def run_gateway(line: Line, harness: Harness) -> None:
    if is_synopsis(line.argv):
        check_gateway_synopsis(line, harness)
        return
    argv = fill(line, harness)
    if argv is None:
        return
    # This checkout's package (not an installed console script), in the scratch folder.
    command = [sys.executable, "-m", "gateway", *argv[1:]]
    env = {**harness.env, **line.env}
    if "serve" in argv[1:]:
        serve_until_ready(line, command, env, harness)
        return
    done = subprocess.run(
        command, cwd=harness.workdir, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        harness.fail(line, f"exit code {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def serve_until_ready(line: Line, command: list[str], env: dict[str, str], harness: Harness) -> None:
    """A `gateway serve ...` line serves for ever: start it on a free port (the last --host/--port
    win), wait for /readyz, then SIGTERM it; it must stop cleanly."""
    port = free_port()
    log = harness.workdir / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--no-train", "--host", "127.0.0.1", "--port", str(port)],
            cwd=harness.workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    gw = GatewayProcess(port, proc, log)
    try:
        gw.wait_ready(300)
    except (RuntimeError, TimeoutError) as exc:
        harness.fail(line, f"did not become ready: {str(exc)[-2000:]}")
        return
    finally:
        gw.stop()
    if proc.returncode != 0:
        harness.fail(line, f"exit code {proc.returncode} after SIGTERM:\n{log.read_text()[-2000:]}")


# --- make ----------------------------------------------------------------------------------------------

_PARSERS = {"gateway": "gateway.cli", "bench": "bench.__main__"}


def make_variants(argv: tuple[str, ...]) -> list[list[str]]:
    """`make bench [ARGS="--prod"]` -> without and with the optional part."""
    plain = [word for word in argv if not word.startswith("[")]
    full = [word.strip("[]") for word in argv]
    return [plain, full] if plain != full else [plain]


def check_make(line: Line, harness: Harness) -> None:
    for variant in make_variants(line.argv):
        done = subprocess.run(
            ["make", "-n", *variant[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            harness.fail(line, f"`make -n {' '.join(variant[1:])}` failed: {done.stderr.strip()[-500:]}")
            continue
        for recipe in done.stdout.splitlines():
            match = re.search(r"\s-m\s+(" + "|".join(_PARSERS) + r")(\s|$)", recipe)
            if match is None:
                continue
            words = shlex.split(recipe)
            at = words.index("-m")
            module = importlib.import_module(_PARSERS[words[at + 1]])
            try:
                module._parser().parse_args(words[at + 2 :])
            except SystemExit:
                harness.fail(line, f"make would run `{recipe.strip()}`, which its parser refuses")


# --- curl, redis-cli, ngrok ----------------------------------------------------------------------------


def run_curl(line: Line, harness: Harness) -> None:
    assert harness.gateway is not None, "curl lines need the session gateway"
    port = str(load_settings(env={}).server.port)
    target = f"127.0.0.1:{harness.gateway.port}"
    argv = [re.sub(rf"(localhost|127\.0\.0\.1):{port}\b", target, word) for word in line.argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        harness.fail(
            line,
            f"curl exit code {done.returncode}: {done.stderr.strip()} (curl lines run against the session "
            f"gateway, which stands in for localhost:{port}; other targets need run_curl extended)",
        )
        return
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        harness.fail(line, f"not a JSON answer: {done.stdout[:300]!r}")
        return
    if isinstance(answer, dict) and "error" in answer:
        harness.fail(line, f"answered an error: {answer['error']}")


def run_redis_cli(line: Line, harness: Harness) -> None:
    argv = [line.argv[0], "-p", str(harness.redis.port), *line.argv[1:]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0 or done.stdout.startswith("(error)") or "ERR" in done.stdout:
        harness.fail(line, f"redis-cli: {done.returncode} {done.stdout.strip()} {done.stderr.strip()}")


def check_ngrok(line: Line, harness: Harness) -> None:
    port = str(load_settings(env={}).server.port)
    if list(line.argv) != ["ngrok", "http", port]:
        harness.fail(
            line, f"expected `ngrok http {port}` (the gateway's default port); not run: needs the internet"
        )


RUNNERS: dict[str, Callable[[Line, Harness], None]] = {
    "gateway": run_gateway,
    "make": check_make,
    "curl": run_curl,
    "redis-cli": run_redis_cli,
    "ngrok": check_ngrok,
}


_PYTHON_M_GATEWAY = re.compile(r"(.*/)?python(3(\.\d+)?)?")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.S)


def normalised(line: Line) -> Line:
    """`NAME=value ... cmd` sets the environment of cmd; `python -m gateway ...` is a `gateway ...` line."""
    argv = list(line.argv)
    env = dict(line.env)
    while argv and _ASSIGNMENT.fullmatch(argv[0]):
        name, _, value = argv.pop(0).partition("=")
        env[name] = value
    if len(argv) >= 3 and _PYTHON_M_GATEWAY.fullmatch(argv[0]) and argv[1:3] == ["-m", "gateway"]:
        argv = ["gateway", *argv[3:]]
    return Line(line.number, line.text, tuple(argv), env)


def check(line: Line, harness: Harness) -> None:
    line = normalised(line)
    runner = RUNNERS.get(line.argv[0]) if line.argv else None
    if runner is None:
        harness.fail(
            line,
            f"no runner for `{line.argv[0] if line.argv else line.text}` lines: add one to RUNNERS in "
            f"{THIS_FILE} (and say in its docstring why it runs the way it does), or write the line as a "
            "`gateway ...` command",
        )
        return
    try:
        runner(line, harness)
    except FileNotFoundError as exc:  # a tool the README uses is missing here: say which
        harness.fail(line, f"{exc.filename} is not installed on this machine (the README uses it)")


# --- the harness and the tests -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def harness(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, gateway: GatewayProcess
) -> Iterator[Harness]:
    workdir = tmp_path_factory.mktemp("readme")
    models = workdir / "models"
    for lang in LANGS:  # the bots' current models: `gateway train` finds them current
        (models / lang).mkdir(parents=True)
        shutil.copy2(models_dir / lang / current_name(lang, models_dir), models / lang)
    redis = RedisServer().start()
    config = workdir / "gateway.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "project": f"readme{uuid.uuid4().hex[:8]}",
                "redis": {"url": redis.url},
                "bots": {"models_dir": str(models), "train_missing": False},
                "models": {"path": str(workdir / "store")},
                "delivery": {"nlu_folds": 0},
                "monitor": {"interval_seconds": 0},
            }
        )
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    env.update(GATEWAY_CONFIG=str(config), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    h = Harness(workdir, config, redis, gateway, env)
    try:
        # Production already had a model, so `gateway rollback` has one to go back to.
        older = workdir / "older" / "20200101T000000Z-older.tar.gz"
        older.parent.mkdir()
        shutil.copy2(models / "pl" / current_name("pl", models), older)
        seed = Line(0, "", ("gateway", "publish", "pl", str(older), "--force"))
        run_gateway(seed, h)
        assert not h.failures, h.failures
        yield h
    finally:
        redis.stop()


def test_the_readme_has_shell_commands() -> None:
    lines = shell_lines(README.read_text(encoding="utf-8"))
    assert {line.argv[0] for line in lines} >= {"gateway", "make", "curl"}


def test_every_readme_command_line_runs(harness: Harness) -> None:
    for line in shell_lines(README.read_text(encoding="utf-8")):
        check(line, harness)
    assert not harness.failures, "README command lines that fail:\n" + "\n".join(harness.failures)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("frobnicate --all", "no runner for `frobnicate` lines: add one to RUNNERS in tests/test_readme"),
        ("gateway serve [--bogus X]", "`gateway serve` does not accept --bogus"),
        ("gateway launch|serve <lang>", "`gateway launch` is not a command"),
        ('make bench [ARGS="--no-such-flag"]', "which its parser refuses"),
        ("make no-such-target", "`make -n no-such-target` failed"),
        ("gateway models <build>", "unknown placeholder <build>: add it to placeholders()"),
        ("gateway models xx", "exit code 2"),
        ("ngrok http 9999", "expected `ngrok http 8080`"),
        ("GATEWAY_SERVER_PORT=eighty gateway models pl", "server.port='eighty'"),
        ("python -m gateway serve --config nowhere.yml", "cannot read config file"),
    ],
)
def test_broken_or_unknown_lines_fail_with_a_reason(block: str, expected: str, tmp_path: Path) -> None:
    # The same checks on made-up lines (no Redis needed: each fails before it would connect).
    env = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(ROOT)
    h = Harness(tmp_path, tmp_path / "none.yml", RedisServer(), None, env)
    (line,) = shell_lines(f"```sh\n{block}\n```\n")
    check(line, h)
    assert len(h.failures) == 1 and expected in h.failures[0], h.failures


def test_multi_line_commands_and_comments_are_parsed() -> None:
    text = "```sh\ncurl -d '{\n  \"a\": 1\n}' x   # comment\n\nmake run # also\n```\n```json\n{}\n```\n"
    lines = shell_lines(text)
    assert [line.argv for line in lines] == [("curl", "-d", '{\n  "a": 1\n}', "x"), ("make", "run")]
    assert [line.number for line in lines] == [2, 6]
