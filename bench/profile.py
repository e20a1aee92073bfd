"""Profile the gateway's request path under load with pyinstrument.

    python -m bench.profile [--prod] [--concurrency 8] [--duration 10]

Starts `gateway serve` under pyinstrument (Redis trackers, same models as `python -m bench`), drives it
with the load generator, stops it with SIGINT, and writes bench/out/profile-<kind>.html and .txt. Prints
where the CPU of the request path went: Rasa's turn, the gateway's own handler, and aiohttp.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.__main__ import OUT, models_for
from bench.procs import Redis, Service, free_port, get_json, wait_until
from bench.systems import model_folder
from gateway.settings import ROOT

# Frames whose total time says where a request's CPU goes (names as pyinstrument prints them).
_FRAMES = {
    "aiohttp request handling (total)": "RequestHandler._handle_request",
    "  gateway webhook handler (total)": "channel_webhook",
    "    reading and checking the body": "read_json",
    "    decode (Actions Builder)": "ActionsBuilderCodec.decode",
    "    encode + JSON response": "json_response",
    "Rasa turn (AgentPool.respond)": "AgentPool.respond",
    "  tracker retrieve": "MessageProcessor.get_tracker",
    "  NLU parse": "MessageProcessor.parse_message",
    "  policy prediction": "MessageProcessor._predict_next_with_tracker",
    "  tracker save": "MessageProcessor.save_tracker",
}


def summarise(text: str) -> list[tuple[str, float]]:
    """Seconds per frame of interest, summed over every place it appears in the text tree."""
    out = []
    for label, frame in _FRAMES.items():
        pattern = re.compile(r"(\d+\.\d+) " + re.escape(frame) + r"\s")
        out.append((label, sum(float(m.group(1)) for m in pattern.finditer(text))))
    return out


def main() -> int:
    """Entry point of `python -m bench.profile`."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--prod", action="store_true")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    models = models_for(["en", "pl", "de"], args.prod)
    kind = "prod" if args.prod else "light"
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    session = work / "gateway.pyisession"
    redis = Redis()
    port = free_port()
    env = {"GATEWAY_BOTS_MODELS_DIR": str(model_folder(models, work)), "GATEWAY_REDIS_URL": redis.url}
    argv = [
        sys.executable,
        "-m",
        "pyinstrument",
        "-r",
        "pyisession",
        "-o",
        str(session),
        "-m",
        "gateway",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-train",
    ]
    gateway = Service("profiled-gateway", argv, env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until([gateway], lambda: get_json(url + "/readyz")[0] == 200, 600)
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.loadgen",
                    "--url",
                    url,
                    "--concurrency",
                    str(args.concurrency),
                    "--duration",
                    str(args.duration),
                    "--out",
                    out.name,
                ],
                cwd=ROOT,
                check=True,
            )
            load = json.loads(Path(out.name).read_text())
        gateway.proc.send_signal(signal.SIGINT)
        gateway.proc.wait(timeout=120)
    finally:
        gateway.stop()
        redis.stop()
    html, txt = OUT / f"profile-{kind}.html", OUT / f"profile-{kind}.txt"
    render = [sys.executable, "-m", "pyinstrument", "--load", str(session)]
    subprocess.run([*render, "-r", "html", "-o", str(html)], check=True)
    subprocess.run([*render, "-r", "text", "-p", "show_all=true", "-o", str(txt)], check=True)
    shutil.rmtree(work, ignore_errors=True)
    gateway.log.unlink(missing_ok=True)
    rate, p99 = load["throughput"], load["p99_ms"]
    print(f"{load['requests']} requests at c={args.concurrency}: {rate} req/s, p99 {p99} ms (profiled)")
    total = dict(summarise(txt.read_text()))
    base = total["aiohttp request handling (total)"] + total["Rasa turn (AgentPool.respond)"]
    for label, seconds in total.items():
        share = f"{100 * seconds / base:5.1f}%" if base else "   - "
        per = 1000 * seconds / max(1, load["requests"])
        print(f"  {label:<36} {seconds:7.2f} s  {share}  {per:6.3f} ms/request")
    print(f"wrote {html} and {txt}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
