"""What a real process writes: only log records (JSON lines in JSON mode), no library chatter.

Real `gateway serve` and `gateway train` subprocesses, with none of the quieting variables set in
their environment: the entry point has to set them itself before TensorFlow is imported.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.settings import ROOT
from tests.support import GatewayProcess, builder_request, free_port, post_json

# What the issue saw on every start, or at training; none may reach the output at INFO.
NOISE = ("TF-TRT", "Could not find TensorRT", "cuda", "auto-fill", "ConvergenceWarning", "lbfgs")
# Variables `logs.quiet_libraries` sets when the user did not: the test's own environment must not.
QUIETING = ("TF_CPP_MIN_LOG_LEVEL", "LOG_LEVEL", "TQDM_DISABLE", "PYTHONWARNINGS")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in QUIETING and not k.startswith("GATEWAY_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line as a JSON record with the fields collectors read; fails naming the first stray line."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\nwhole output:\n{text}") from None
        assert isinstance(record, dict), line
        assert {"severity", "message", "time", "logger"} <= record.keys(), line
        assert record["time"].endswith("Z"), line
        records.append(record)
    return records


def run_gateway(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_served_gateway_in_json_mode_writes_only_json_records(models_dir: Path) -> None:
    env = clean_env(
        GATEWAY_BOTS_MODELS_DIR=str(models_dir),
        GATEWAY_BOTS_TRAIN_MISSING="false",
        GATEWAY_LOGGING_FORMAT="json",
        GATEWAY_MONITOR_INTERVAL_SECONDS="0",
    )
    port = free_port()
    # Not GatewayProcess.start: it passes on this process' environment, quieting variables included.
    log_path = ROOT / ".pytest_cache" / f"quiet-serve-{port}.log"
    log_path.parent.mkdir(exist_ok=True)
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    gw = GatewayProcess(port, proc, log_path)
    try:
        gw.wait_ready(180)
        status, _ = post_json(f"{gw.url}/webhook/google", builder_request("hello", "en-US"))
        assert status == 200
        with urllib.request.urlopen(f"{gw.url}/metrics", timeout=10) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        gw.stop()
    text = log_path.read_text(encoding="utf-8")
    log_path.unlink()
    records = json_lines(text)
    messages = [r["message"] for r in records]
    assert f"serving on http://127.0.0.1:{port}" in messages
    assert "shutdown complete" in messages
    assert any(r["logger"] == "gateway.routing.access" and r.get("status") == 200 for r in records)
    for record in records:
        assert not any(noise in record["message"] for noise in NOISE), record


def test_training_prints_only_progress_in_text_mode_and_json_records_in_json_mode(tmp_path: Path) -> None:
    bots = tmp_path / "bots"
    shutil.copytree(ROOT / "bots" / "en", bots / "en", ignore=shutil.ignore_patterns("results"))
    env = clean_env(GATEWAY_BOTS_DIR=str(bots), GATEWAY_BOTS_MODELS_DIR=str(tmp_path / "models"))

    text = run_gateway("train", "en", env=env)
    assert text.returncode == 0, text.stdout + text.stderr
    lines = (text.stdout + text.stderr).splitlines()
    assert lines[0] == f"[1/1] en: training {bots / 'en'} ...", lines
    assert lines[-1].startswith("[1/1] en: trained in "), lines
    assert len(lines) == 2, "\n".join(lines)  # nothing but the gateway's own progress

    again = run_gateway("train", "en", "--force", env={**env, "GATEWAY_LOGGING_FORMAT": "json"})
    assert again.returncode == 0, again.stdout + again.stderr
    out, err = json_lines(again.stdout), json_lines(again.stderr)
    assert [r["message"].split(" ")[:3] for r in out] == [
        ["[1/1]", "en:", "training"],
        ["[1/1]", "en:", "trained"],
    ]
    assert {r["logger"] for r in out} == {"gateway.progress"}
    assert err == [], err


def test_warnings_and_rasa_structlog_events_become_records() -> None:
    """The routing itself, in a fresh interpreter: expected warnings drop to DEBUG, others stay,
    a structlog event's fields become JSON fields (a clashing `message` key is kept aside)."""
    script = """
import warnings, structlog
from gateway import logs
from gateway.settings import LoggingSettings
logs.quiet_libraries()
logs.configure(LoggingSettings(format="json"))
warnings.warn("Slot auto-fill has been removed in 3.0 and replaced with a new explicit mechanism")
warnings.warn("your bot's data looks odd", UserWarning)
warnings.warn("old API", DeprecationWarning)
structlog.get_logger().warning("rasa.test.event", message="clashing key", intent="greet")
logs.progress("a progress line")
"""
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", script],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [progress] = json_lines(done.stdout)
    assert progress["message"] == "a progress line"
    warning, event = json_lines(done.stderr)
    assert warning["logger"] == "py.warnings"
    assert warning["severity"] == "WARNING"
    assert warning["message"] == "UserWarning: your bot's data looks odd"
    assert warning["category"] == "UserWarning"
    assert event["message"] == "rasa.test.event"
    assert event["severity"] == "WARNING"
    assert event["intent"] == "greet"
    assert event["field_message"] == "clashing key"


def test_a_configuration_error_in_json_mode_is_a_json_record() -> None:
    env = clean_env(GATEWAY_LOGGING_FORMAT="json", GATEWAY_SERVER_PORT="eighty")
    done = run_gateway("serve", env=env)
    assert done.returncode == 2
    [record] = json_lines(done.stderr)
    assert record["severity"] == "ERROR"
    assert record["message"].startswith("configuration error: invalid setting server.port='eighty'")
    assert done.stdout == ""
