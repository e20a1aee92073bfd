"""`make bench` / `python -m bench`: the raw-agent limit, this gateway and the usual deployment, one run.

All three answer the same six-turn conversations in en/pl/de from the same model archives; the load comes
from a separate process (bench.loadgen). Writes bench/out/bench-<light|prod>-<stamp>.json and .png (and
latest-<kind>.*), and prints the table and the ratios against the targets (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report
from bench.procs import Redis, cpu_seconds, rss_bytes
from bench.systems import System, start_gateway, start_usual
from gateway.settings import ROOT
from gateway.training import current_model

OUT = ROOT / "bench" / "out"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--prod", action="store_true", help="DIET/TED bots (config.prod.yml), trained on demand"
    )
    parser.add_argument("--concurrency", default="1,8,16", help="comma-separated levels (default 1,8,16)")
    parser.add_argument("--workers", default="1,2", help="gateway worker counts to measure (default 1,2)")
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds measured per level (default 20)"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load per level")
    parser.add_argument("--max-requests", type=int, default=200_000, help="request cap per level")
    parser.add_argument("--systems", default="raw,gateway,usual", help="which of raw,gateway,usual to run")
    parser.add_argument("--langs", default="en,pl,de")
    parser.add_argument(
        "--channel",
        default="google",
        choices=["google", "rest", "dialogflow_cx"],
        help="what the load speaks to the gateway (the usual deployment is always driven with google)",
    )
    parser.add_argument(
        "--router",
        default="auto",
        choices=["auto", "nginx", "python"],
        help="the usual deployment's front: nginx + Lua when installed (auto), required (nginx), or the "
        "Python proxy bench/proxy.py (python)",
    )
    parser.add_argument(
        "--rates",
        help="open-loop arrival rates after the closed-loop levels: N%% of the usual deployment's best "
        "closed-loop throughput, or plain req/s; '' for none (default 50%%,100%%,150%% when usual is "
        "measured, else none)",
    )
    parser.add_argument(
        "--rate-duration", type=float, help="seconds of scheduled sends per rate (default: --duration)"
    )
    parser.add_argument("--rate-timeout", type=float, default=10.0, help="open-loop request timeout, s")
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for start-up")
    parser.add_argument(
        "--inference",
        help="where the gateway runs turns, one run each: loop, thread or loop,thread "
        "(default loop; with --prod loop,thread: a DIET/TED turn is longer than the health budget)",
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra GATEWAY_* setting for the gateway runs, e.g. GATEWAY_SERVER_RUNNING_TURNS=2 (repeatable)",
    )
    parser.add_argument(
        "--unbatched",
        action=argparse.BooleanOptionalAction,
        help="also the gateway with max_batch 1, at c=1, per inference mode with the most workers, to see "
        "what batching costs a quiet bot (default: with --prod)",
    )
    parser.add_argument(
        "--swap",
        action=argparse.BooleanOptionalAction,
        help="end with bench.swap: a model published while one gateway process is saturated (default: "
        "with --prod; DIET/TED or light as the run)",
    )
    parser.add_argument("--swap-users", type=int, default=4, help="users saturating the swap's gateway")
    parser.add_argument("--swap-seconds", type=float, default=20.0, help="steady load around the swap")
    parser.add_argument("--quick", action="store_true", help="smoke run: levels 1,8, 1 s warm-up + 3 s each")
    parser.add_argument(
        "--actions",
        action="store_true",
        help="instead: a custom action in process vs on an action server (bench/actions.py; its own options)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    return parser


def models_for(langs: list[str], prod: bool) -> dict[str, Path]:
    """The model archive per language from the cache, training missing ones (`gateway train`) first."""
    cache = Path(os.environ.get("GATEWAY_MODEL_CACHE", ROOT / ".cache" / "models"))
    root = cache / "prod" if prod else cache
    config = "config.prod.yml" if prod else "config.yml"

    def found() -> dict[str, Path | None]:
        return {lang: current_model(ROOT / "bots" / lang, root / lang, config) for lang in langs}

    models = found()
    for lang in [lang for lang, path in models.items() if path is None]:
        print(f"bench: training the {config} bot for {lang} into {root} ...", flush=True)
        argv = [sys.executable, "-m", "gateway", "train", lang, *(["--prod"] if prod else [])]
        env = {**os.environ, "GATEWAY_BOTS_MODELS_DIR": str(root)}
        subprocess.run(argv, cwd=ROOT, env=env, check=True)
    models = found()
    missing = [lang for lang, path in models.items() if path is None]
    if missing:
        raise SystemExit(f"bench: no model for {', '.join(missing)} after training")
    return {lang: path for lang, path in models.items() if path is not None}


def machine() -> dict[str, Any]:
    """What the numbers were measured on (a busy machine makes them meaningless: see loadavg)."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "commit": commit.stdout.strip(),
    }


def run_raw(models: dict[str, Path], args: argparse.Namespace, levels: list[int]) -> dict[str, Any]:
    """The in-process limit, in its own process."""
    with tempfile.TemporaryDirectory(prefix="bench-raw-") as tmp:
        out = Path(tmp) / "raw.json"
        argv = [
            sys.executable,
            "-m",
            "bench.raw",
            *(f"--model={lang}={path}" for lang, path in models.items()),
            "--concurrency",
            ",".join(map(str, levels)),
            "--duration",
            str(args.duration),
            "--warmup",
            str(args.warmup),
            "--max-requests",
            str(args.max_requests),
            "--out",
            str(out),
        ]
        budget = args.ready_timeout + len(levels) * (args.duration + 60) + args.warmup
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        subprocess.run(argv, cwd=ROOT, env=env, check=True, timeout=budget)
        raw = json.loads(out.read_text())
    for point in raw["levels"]:
        point["rss_bytes"] = {"server": point["rss_bytes"]}
        point["cpu_ms_per_request"] = {"server": point["cpu_ms_per_request"]}
    notes = ["in-memory trackers", "custom actions in process (rasa-sdk's ActionExecutor)"]
    return {"ready_seconds": raw["load_seconds"], "levels": raw["levels"], "notes": notes}


def loadgen(
    system: System,
    concurrency: int,
    duration: float,
    max_requests: int,
    probes: bool,
    langs: list[str],
    channel: str = "google",
) -> dict[str, Any]:
    """One load run from a separate process; its JSON result."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        out = Path(tmp) / "load.json"
        argv = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--url",
            system.url,
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration),
            "--max-requests",
            str(max_requests),
            "--langs",
            ",".join(langs),
            "--channel",
            channel,
            "--out",
            str(out),
            *(f"--probe={url}" for url in (system.probes if probes else [])),
        ]
        subprocess.run(argv, cwd=ROOT, check=True, timeout=duration + 120)
        result: dict[str, Any] = json.loads(out.read_text())
    system.check_alive()
    return result


def open_loop(system: System, rate: float, args: argparse.Namespace, langs: list[str]) -> dict[str, Any]:
    """One open-loop run at `rate` req/s from a separate process (bench.openloop); its JSON result."""
    duration = args.rate_duration or args.duration
    channel = args.channel if system.name.startswith("gateway") else "google"
    with tempfile.TemporaryDirectory(prefix="bench-open-") as tmp:
        out = Path(tmp) / "open.json"
        argv = [
            sys.executable,
            "-m",
            "bench.openloop",
            f"--url={system.url}",
            f"--rate={rate}",
            f"--duration={duration}",
            f"--timeout={args.rate_timeout}",
            f"--langs={','.join(langs)}",
            f"--channel={channel}",
            f"--out={out}",
        ]
        subprocess.run(argv, cwd=ROOT, check=True, timeout=duration + args.rate_timeout + 120)
        result: dict[str, Any] = json.loads(out.read_text())
    system.check_alive()
    return result


def parse_rates(spec: str) -> list[str]:
    """The --rates entries, checked: "50%" (of the usual deployment's best) or "40" (req/s)."""
    entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
    for entry in entries:
        try:
            value = float(entry.removesuffix("%"))
        except ValueError:
            raise SystemExit(f"bench: --rates entry {entry!r} is not a number or N%") from None
        if value <= 0:
            raise SystemExit(f"bench: --rates entry {entry!r} must be positive")
    return entries


def resolve_rates(entries: list[str], usual: dict[str, Any] | None) -> list[tuple[str, float]]:
    """(label, req/s) per entry; percentages need the usual deployment's closed-loop levels."""
    best = max((p["throughput"] for p in (usual or {}).get("levels", [])), default=0.0)
    out = []
    for entry in entries:
        if entry.endswith("%"):
            if best <= 0:
                continue
            out.append((entry, round(best * float(entry[:-1]) / 100.0, 1)))
        else:
            out.append((f"{float(entry):g}/s", float(entry)))
    return out


def measure_rates(
    system: System, rates: list[tuple[str, float]], args: argparse.Namespace, langs: list[str]
) -> list[dict[str, Any]]:
    """Every open-loop rate against `system`, in order."""
    points = []
    for label, rate in rates:
        point = {"label": label, **open_loop(system, rate, args, langs)}
        points.append(point)
        print(
            f"bench: {system.name:<17} {label:>6} = {rate:6.1f}/s  achieved {point['throughput']:7.1f} req/s"
            f"  p50 {point['p50_ms']} ms  p99 {point['p99_ms']} ms"
            f"  errors {point['errors']}  timeouts {point['timeouts']}  wrong {point['wrong']}",
            flush=True,
        )
    return points


def measure(
    system: System, redis: Redis, args: argparse.Namespace, levels: list[int], langs: list[str]
) -> Any:
    """Every concurrency level against `system`: warm-up, then a measured run with CPU and RSS around it."""
    groups = {**system.groups, "redis": [redis.service]}
    points = []
    channel = args.channel if system.name.startswith("gateway") else "google"
    for level in levels:
        if args.warmup > 0:
            loadgen(system, level, args.warmup, args.max_requests, False, langs, channel)
        before = {name: cpu_seconds(pids) for name, pids in _pids(system, groups).items()}
        point = loadgen(system, level, args.duration, args.max_requests, True, langs, channel)
        after = {name: cpu_seconds(pids) for name, pids in _pids(system, groups).items()}
        requests = max(1, point["requests"])
        point["cpu_ms_per_request"] = {n: round(1000 * (after[n] - before[n]) / requests, 3) for n in after}
        point["rss_bytes"] = {name: rss_bytes(pids) for name, pids in _pids(system, system.groups).items()}
        points.append(point)
        print(
            f"bench: {system.name:<17} c={level:<3} {point['throughput']:8.1f} req/s"
            f"  p99 {point['p99_ms']} ms"
            f"  errors {point['errors']}  wrong {point['wrong']}",
            flush=True,
        )
    return points


def _pids(system: System, groups: dict[str, Any]) -> dict[str, list[int]]:
    return {
        name: [pid for service in services for pid in service.pids()] for name, services in groups.items()
    }


def run_swap(args: argparse.Namespace) -> dict[str, Any]:
    """bench.swap in its own process (its own Redis, S3 and gateway), after every other system stopped."""
    with tempfile.TemporaryDirectory(prefix="bench-swap-") as tmp:
        out = Path(tmp) / "swap.json"
        argv = [
            sys.executable,
            "-m",
            "bench.swap",
            "--config",
            "config.prod.yml" if args.prod else "config.yml",
            "--users",
            str(args.swap_users),
            "--seconds",
            str(args.swap_seconds),
            "--json",
            str(out),
        ]
        print("bench: hot swap under load (bench.swap) ...", flush=True)
        done = subprocess.run(argv, cwd=ROOT)
        if not out.exists():
            return {"notes": [f"bench.swap wrote no result (exit status {done.returncode})"]}
        return dict(json.loads(out.read_text()))


def run_system(
    name: str,
    start: Any,
    redis: Redis,
    args: argparse.Namespace,
    levels: list[int],
    langs: list[str],
    rates: Callable[[list[dict[str, Any]]], list[tuple[str, float]]],
) -> dict[str, Any]:
    """Start a system on an empty Redis, measure it (closed loop, then the open-loop `rates(levels)`),
    note whether its trackers went to Redis, stop it."""
    redis.command("FLUSHALL")
    print(f"bench: starting {name} ...", flush=True)
    try:
        system: System = start()
    except (RuntimeError, TimeoutError, OSError) as exc:
        # One system that cannot start must not cost the others' results: report it and go on.
        print(f"bench: {name} did not start: {exc}", file=sys.stderr, flush=True)
        return {
            "ready_seconds": None,
            "levels": [],
            "open_loop": [],
            "notes": [f"did not start: {str(exc)[:500]}"],
        }
    system.name = name
    try:
        print(f"bench: {name} ready in {system.ready_seconds:.1f}s", flush=True)
        points = measure(system, redis, args, levels, langs)
        keys = redis.command("DBSIZE")
        open_points = measure_rates(system, rates(points), args, langs)
    finally:
        system.stop()
    notes = list(system.notes)
    if not keys:
        notes.append("no keys in Redis after the run: this build keeps trackers in memory")
    out = {
        "ready_seconds": round(system.ready_seconds, 2),
        "redis_keys": keys,
        "levels": points,
        "open_loop": open_points,
        "notes": notes,
    }
    if system.router:
        out["router"] = system.router
    return out


def main() -> int:
    """Entry point of `python -m bench`."""
    if "--actions" in sys.argv[1:]:
        from bench import actions

        return actions.main([arg for arg in sys.argv[1:] if arg != "--actions"])
    args = _parser().parse_args()
    if args.quick:
        args.duration, args.warmup, args.concurrency = 3.0, 1.0, "1,8"
    levels = sorted({int(level) for level in args.concurrency.split(",")})
    langs = [lang for lang in args.langs.split(",") if lang]
    wanted = set(args.systems.split(","))
    workers = [int(w) for w in args.workers.split(",")]
    inference = (args.inference or ("loop,thread" if args.prod else "loop")).split(",")
    if not set(inference) <= {"loop", "thread"}:
        raise SystemExit("bench: --inference takes loop, thread or loop,thread")
    if args.rates is None:
        args.rates = "50%,100%,150%" if "usual" in wanted else ""
    if args.unbatched is None:
        args.unbatched = args.prod and "gateway" in wanted
    if args.swap is None:
        args.swap = args.prod
    rate_entries = parse_rates(args.rates)
    if any(entry.endswith("%") for entry in rate_entries) and "usual" not in wanted:
        raise SystemExit(
            "bench: --rates in % of the usual deployment need usual in --systems (or give req/s)"
        )
    started = time.time()
    result: dict[str, Any] = {
        "machine": machine(),
        "config": {
            "bots": "DIET/TED (config.prod.yml)" if args.prod else "light (config.yml)",
            "concurrency": levels,
            "duration": args.duration,
            "warmup": args.warmup,
            "langs": langs,
            "channel": args.channel,
            "workers": workers,
            "inference": inference,
            "rates": rate_entries,
            "rate_duration": args.rate_duration or args.duration,
            "rate_timeout": args.rate_timeout,
            "router": args.router,
            "command": " ".join(sys.argv),
        },
        "systems": {},
    }
    if result["machine"]["loadavg_at_start"][0] > 0.5:
        print(
            f"bench: warning: load average {result['machine']['loadavg_at_start']} - the machine is busy, "
            "numbers will be noisy",
            file=sys.stderr,
        )
    extra_env = dict(item.split("=", 1) for item in args.gateway_env)
    if any(not key.startswith("GATEWAY_") for key in extra_env):
        raise SystemExit("bench: --gateway-env takes GATEWAY_*=VALUE settings")
    result["config"]["gateway_env"] = extra_env
    models = models_for(langs, args.prod)
    result["models"] = {lang: path.name for lang, path in models.items()}
    if "raw" in wanted:
        print("bench: raw in-process agents ...", flush=True)
        result["systems"]["raw"] = run_raw(models, args, levels)
        for point in result["systems"]["raw"]["levels"]:
            print(
                f"bench: {'raw':<17} c={point['concurrency']:<3} {point['throughput']:8.1f} req/s  "
                f"p99 {point['p99_ms']} ms",
                flush=True,
            )
    redis = Redis()
    try:
        # The usual deployment first: the open-loop rates are percentages of its best closed-loop result.
        if "usual" in wanted:

            def start_rasa() -> System:
                return start_usual(models, redis.port, args.ready_timeout, args.router)

            def usual_rates(points: list[dict[str, Any]]) -> list[tuple[str, float]]:
                return resolve_rates(rate_entries, {"levels": points})

            result["systems"]["usual"] = run_system(
                "usual", start_rasa, redis, args, levels, langs, usual_rates
            )
        rates = resolve_rates(rate_entries, result["systems"].get("usual"))
        if "gateway" in wanted:
            for mode, count in [(mode, count) for mode in inference for count in workers]:
                name = f"gateway w{count}" + ("" if mode == "loop" else f" {mode}")
                env = {**extra_env, "GATEWAY_SERVER_INFERENCE": mode}

                def start(count: int = count, env: dict[str, str] = env) -> System:
                    return start_gateway(models, redis.url, count, args.ready_timeout, env)

                result["systems"][name] = run_system(
                    name, start, redis, args, levels, langs, lambda _points: rates
                )
        if "gateway" in wanted and args.unbatched:
            count = max(workers)
            for mode in inference:
                name = f"gateway w{count}" + ("" if mode == "loop" else f" {mode}") + " unbatched"
                env = {**extra_env, "GATEWAY_SERVER_INFERENCE": mode, "GATEWAY_SERVER_MAX_BATCH": "1"}

                def start_unbatched(count: int = count, env: dict[str, str] = env) -> System:
                    return start_gateway(models, redis.url, count, args.ready_timeout, env)

                result["systems"][name] = run_system(
                    name, start_unbatched, redis, args, [1], langs, lambda _points: []
                )
    finally:
        redis.stop()
    if args.swap:
        result["swap"] = run_swap(args)
    if "usual" in result["systems"]:
        result["systems"]["usual"] = result["systems"].pop("usual")
    result["seconds"] = round(time.time() - started, 1)
    return _write(result, args.out)


def _write(result: dict[str, Any], out: Path) -> int:
    checks = report.checks(result)
    result["checks"] = [check.__dict__ for check in checks]
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    kind = "prod" if "DIET" in result["config"]["bots"] else "light"
    json_path, png_path = out / f"bench-{kind}-{stamp}.json", out / f"bench-{kind}-{stamp}.png"
    json_path.write_text(json.dumps(result, indent=1))
    report.plot(result, png_path)
    shutil.copyfile(json_path, out / f"latest-{kind}.json")
    shutil.copyfile(png_path, out / f"latest-{kind}.png")
    print()
    print(
        f"{result['config']['bots']} bots on {result['machine']['nproc']} x {result['machine']['cpu']} "
        f"(load average at start {result['machine']['loadavg_at_start']})"
    )
    print(report.front(result))
    print(report.table(result))
    if any(system.get("open_loop") for system in result["systems"].values()):
        print()
        print(report.open_table(result))
    print()
    for name, system in result["systems"].items():
        for note in system.get("notes", []):
            print(f"note: {name}: {note}")
        print(f"{name}: ready in {system['ready_seconds']} s")
    swap = result.get("swap")
    if swap:
        for note in swap.get("notes", []):
            print(f"note: swap: {note}")
        for phase in ("before", "during", "after"):
            if phase in swap:
                numbers = swap[phase]
                print(
                    f"swap {phase:<7} {numbers['requests']:5d} requests  p50 {numbers['p50_ms']} ms  "
                    f"p99 {numbers['p99_ms']} ms  max {numbers['max_ms']} ms  errors {numbers['errors']}"
                )
        print(f"swap: event -> first answer by the new model: {swap.get('first_new_seconds')} s")
    print("\nratios against the targets:")
    for check in checks:
        print(check.row())
    print(f"\nwrote {json_path} and {png_path} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
