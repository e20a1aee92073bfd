"""The systems under test, started the way people run them: this gateway, and one `rasa run` per language."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench import nginx
from bench.procs import Service, free_port, get_json, wait_until
from gateway.settings import ROOT


@dataclass
class System:
    """Something that answers Actions Builder webhooks on `url`; `groups` name the processes to measure;
    `probes` are URLs checked for latency while the bots are saturated."""

    name: str
    url: str
    services: list[Service]
    ready_seconds: float
    # Which services make up each reported group (e.g. "rasa" = the three rasa processes, "proxy").
    groups: dict[str, list[Service]] = field(default_factory=dict)
    probes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The usual deployment's front: "nginx+lua" or "python" (bench/proxy.py); "" for the gateway.
    router: str = ""

    def pids(self, group: str) -> list[int]:
        return [pid for service in self.groups[group] for pid in service.pids()]

    def check_alive(self) -> None:
        for service in self.services:
            service.check_alive()

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


def model_folder(models: Mapping[str, Path], parent: Path | None = None) -> Path:
    """A models_dir with only the chosen archive per language (symlinks): the gateway loads exactly those."""
    folder = Path(tempfile.mkdtemp(prefix="bench-models-", dir=parent))
    for lang, path in models.items():
        (folder / lang).mkdir()
        (folder / lang / path.name).symlink_to(path.resolve())
    return folder


def start_gateway(
    models: Mapping[str, Path],
    redis_url: str,
    workers: int,
    timeout: float,
    extra_env: Mapping[str, str] | None = None,
) -> System:
    """`python -m gateway serve` with Redis trackers; ready when every worker answers /readyz with 200."""
    port = free_port()
    models_dir = model_folder(models)
    env = {
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_SERVER_WORKERS": str(workers),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    argv = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-train",
    ]
    service = Service(f"gateway-w{workers}", argv, env, cwd=ROOT, owns=models_dir)
    url = f"http://127.0.0.1:{port}"
    ready_pids: set[int] = set()

    def ready() -> bool:
        # Each poll is a new connection, so with SO_REUSEPORT it lands on any worker; wait for all of them.
        # Only the measured languages must be ready (the others have no model in the folder: 503 forever).
        _, body = get_json(url + "/readyz")
        if not isinstance(body, dict):
            return False
        bots = body.get("bots") or {}
        if all((bots.get(lang) or {}).get("state") == "ready" for lang in models):
            ready_pids.add(body.get("pid", 0))
        return len(ready_pids) >= workers or 0 in ready_pids

    try:
        seconds = wait_until([service], ready, timeout)
    except BaseException:
        service.stop()
        raise
    status, _ = get_json(url + "/metrics")
    probes = [url + "/healthz", url + "/metrics"] if status == 200 else [url + "/healthz"]
    notes = [] if status == 200 else ["no /metrics endpoint on this gateway yet: only /healthz was probed"]
    name = f"gateway w{workers}"
    return System(name, url, [service], seconds, {"server": [service]}, probes, notes)


CONNECTOR = "bench.rasa_google_connector.GoogleConnector"
ROUTERS = ("auto", "nginx", "python")


def _rasa_files(folder: Path, redis_port: int, lang: str, actions_port: int) -> tuple[Path, Path]:
    endpoints = {
        # Rasa 3.6 runs custom actions only on an action server (the bots' `actions_module` is the gateway's).
        "action_endpoint": {"url": f"http://127.0.0.1:{actions_port}/webhook"},
        "tracker_store": {
            "type": "redis",
            "url": "127.0.0.1",
            "port": redis_port,
            "db": 0,
            # Must be alphanumeric, or Rasa silently falls back to its default prefix.
            "key_prefix": f"rasa{lang}",
            "record_exp": 86400,
        },
    }
    (folder / "endpoints.yml").write_text(yaml.safe_dump(endpoints))
    # Rasa has no Google channel: the custom connector a Rasa user writes (bench/rasa_google_connector.py).
    (folder / "credentials.yml").write_text(yaml.safe_dump({CONNECTOR: {"welcome": "/greet"}}))
    return folder / "endpoints.yml", folder / "credentials.yml"


def choose_router(router: str) -> tuple[nginx.Nginx | None, str]:
    """nginx + Lua when asked for or found ("auto"), else the Python proxy; and the sentence saying which."""
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, not {router!r}")
    if router == "python":
        return None, "router: Python proxy (bench/proxy.py), as asked (--router python)"
    found = nginx.find()
    if isinstance(found, nginx.Nginx):
        return found, f"router: nginx {found.version} + Lua ({found.binary})"
    if router == "nginx":
        raise RuntimeError(f"--router nginx: {found}")
    return None, f"router: Python proxy (bench/proxy.py), nginx + Lua not available: {found}"


def start_usual(models: Mapping[str, Path], redis_port: int, timeout: float, router: str = "auto") -> System:
    """One `rasa run` per language (Google connector, RedisTrackerStore) and its action server (`python -m
    rasa_sdk`), behind nginx + Lua or the Python proxy."""
    front, router_note = choose_router(router)
    services: list[Service] = []
    ports: dict[str, int] = {}
    action_ports: dict[str, int] = {}
    env = {
        "RASA_TELEMETRY_ENABLED": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),  # so `rasa run` imports the connector named in credentials.yml
    }
    try:
        for lang, model in models.items():
            folder = Path(tempfile.mkdtemp(prefix=f"bench-rasa-{lang}-"))
            actions_port = free_port()
            endpoints, credentials = _rasa_files(folder, redis_port, lang, actions_port)
            ports[lang], action_ports[lang] = free_port(), actions_port
            argv = [
                sys.executable,
                "-m",
                "rasa",
                "run",
                "--enable-api",
                "-m",
                str(model.resolve()),
                "-i",
                "127.0.0.1",
                "-p",
                str(ports[lang]),
                "--endpoints",
                str(endpoints),
                "--credentials",
                str(credentials),
            ]
            services.append(Service(f"rasa-{lang}", argv, env, cwd=folder, owns=folder))
        rasa = list(services)
        for lang, actions_port in action_ports.items():
            argv = [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(actions_port)]
            services.append(Service(f"actions-{lang}", argv, env, cwd=ROOT / "bots" / lang))
        actions = services[len(rasa) :]
        front_port = free_port()
        if front is not None:
            services.append(nginx.start(front, front_port, ports))
        else:
            routes = [f"--route={lang}=http://127.0.0.1:{port}" for lang, port in ports.items()]
            argv = [sys.executable, "-m", "bench.proxy", "--port", str(front_port), *routes]
            services.append(Service("proxy", argv, {"PYTHONUNBUFFERED": "1"}, cwd=ROOT))
        status_urls = [f"http://127.0.0.1:{port}/status" for port in ports.values()]
        action_urls = [f"http://127.0.0.1:{port}/health" for port in action_ports.values()]
        front_url = f"http://127.0.0.1:{front_port}"

        def ready() -> bool:
            urls = [*status_urls, *action_urls, front_url + "/healthz"]
            return all(get_json(url)[0] == 200 for url in urls)

        seconds = wait_until(services, ready, timeout)
    except BaseException:
        for service in reversed(services):
            service.stop()
        raise
    # Rasa's own liveness route on the first language's process (nginx would answer its own checks).
    probes = [status_urls[0].removesuffix("/status") + "/"] if status_urls else []
    groups = {"rasa": rasa, "actions": actions, "router": services[-1:]}
    notes = [router_note, "health probe: GET / of rasa run"]
    system = System("usual", front_url, services, seconds, groups, probes, notes)
    system.router = "nginx+lua" if front is not None else "python"
    return system
