"""Deployment files checked offline against the gateway's real settings, routes and metrics.

Dockerfile with dockerfile-parse; Kubernetes overlays rendered with `kubectl kustomize` and validated
with kubernetes-validate's bundled schemas; CI templates against check-jsonschema's vendored GitHub
Actions and GitLab CI schemas. Both checkers run from their own virtualenv (scripts/dev-tools).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from gateway.app import create_app
from gateway.settings import DEFAULT_CONFIG, ROOT, load_settings
from scripts import lockfiles
from tests.support import GatewayProcess, free_port

K8S_DIR = ROOT / "config" / "kubernetes"
CI_DIR = ROOT / "config" / "ci"
K8S_VERSION = "1.37.0"  # the newest schema set kubernetes-validate 1.37.0 bundles (requirements-tools.lock)
# Measured RSS of a gateway with the three light bots loaded (MiB); see deployment.yaml.
MEASURED_RSS_MIB = 559
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|ACCESS_KEY|HMAC|REDIS_URL", re.IGNORECASE)
CREDENTIAL = re.compile(r"://[^/\s:@]+:[^@\s]+@|AKIA[0-9A-Z]{16}|-----BEGIN")


# ---------------------------------------------------------------- Dockerfile


def stages() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Dockerfile stages: name -> (FROM image or stage, [(INSTRUCTION, value), ...])."""
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    out: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] = []
    global_args: dict[str, str] = {}  # ARGs before the first FROM, with their defaults
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "ARG" and not out:
            name, _, default = value.partition("=")
            global_args[name.strip()] = default.strip()
        if instruction == "FROM":
            for arg, default in global_args.items():
                value = value.replace(f"${{{arg}}}", default)
            image, _, name = value.partition(" AS ")
            current = []
            out[name.strip() or image.strip()] = (image.strip(), current)
        elif instruction != "COMMENT" and out:
            current.append((instruction, value))
    return out


def final_chain() -> list[tuple[str, list[tuple[str, str]]]]:
    """The default target and its ancestors, base first: [(stage, instructions), ...]."""
    all_stages = stages()
    name = list(all_stages)[-1]
    chain = []
    while name in all_stages:
        image, instructions = all_stages[name]
        chain.append((name, instructions))
        name = image
    chain.append((name, []))  # the external base image
    return list(reversed(chain))


def instructions(kind: str) -> list[str]:
    return [value for _, body in final_chain() for inst, value in body if inst == kind]


def test_dockerfile_uses_the_projects_python_on_slim() -> None:
    base = final_chain()[0][0]
    assert base == "python:3.10-slim"
    requires = re.search(r'requires-python = "(.*)"', (ROOT / "pyproject.toml").read_text())
    assert requires is not None and requires.group(1) == ">=3.10,<3.11"
    external = {image for image, _ in stages().values() if ":" in image}
    assert external == {"python:3.10-slim"}  # every stage builds on the same interpreter


def test_dockerfile_port_health_user_and_command() -> None:
    port = load_settings(env={}).server.port
    assert instructions("EXPOSE") == [str(port)]
    (health,) = instructions("HEALTHCHECK")
    assert "/healthz" in health and "urllib.request" in health and "curl" not in health
    routes = {
        (r.method, r.resource.canonical)
        for r in create_app(load_settings(env={})).router.routes()
        if r.resource
    }
    assert ("GET", "/healthz") in routes
    user = instructions("USER")[-1]
    assert user.split(":")[0] not in {"root", "0"}
    assert json.loads(instructions("ENTRYPOINT")[-1]) == ["python", "-m", "gateway"]
    assert json.loads(instructions("CMD")[-1])[0] == "serve"


def test_dockerfile_base_image_can_be_pinned_by_digest() -> None:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    froms = [i["value"] for i in parser.structure if i["instruction"] == "FROM"]
    external = [value for value in froms if not value.startswith(("models-", "app "))]
    assert external and all(value.startswith("${PYTHON_IMAGE} AS ") for value in external)
    text = (ROOT / "Dockerfile").read_text()
    assert "--build-arg PYTHON_IMAGE=python:3.10-slim@sha256:<digest>" in text
    assert not re.search(r"@sha256:[0-9a-f]{64}", text)  # no digest written from memory


def test_the_image_installs_the_runtime_lock_without_dev_tools() -> None:
    def names(lock: str) -> set[str]:
        return {pin.name for pin in lockfiles.pins(lock)}

    # The dev lock repeats a runtime pin only for a platform the runtime lock has no line for (greenlet on
    # macOS, for playwright); tests/test_locks.py checks that both agree on every platform.
    runtime, dev = names("requirements.lock"), names("requirements-dev.lock")
    tools = {"pytest", "hypothesis", "moto", "mypy", "ruff", "cfn-lint", "flask", "docker", "pyinstrument"}
    assert tools <= dev and not tools & runtime
    assert {"rasa", "aiohttp", "redis", "uvloop", "orjson", "prometheus-client", "aiobotocore"} <= runtime
    install = [v for inst, v in stages()["deps"][1] if inst == "RUN" and "pip install" in v]
    assert install and all("requirements-dev" not in v for v in install)


def test_dockerfile_installs_the_lock_in_its_own_cached_layer_before_the_code() -> None:
    all_stages = stages()
    _, deps = all_stages["deps"]
    copies = [value for inst, value in deps if inst == "COPY"]
    assert copies == ["requirements.lock /tmp/requirements.lock"]  # nothing else can bust the layer
    install = next(
        i for i, (inst, value) in enumerate(deps) if inst == "RUN" and "-r /tmp/requirements.lock" in value
    )
    assert deps.index(("COPY", copies[0])) < install
    order = [value for _, body in final_chain() for inst, value in body if inst == "COPY"]
    venv = next(i for i, value in enumerate(order) if value.startswith("--from=deps"))
    code = next(i for i, value in enumerate(order) if value.startswith("gateway/"))
    assert venv < code


def test_dockerignore_sends_only_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(name: str) -> bool:
        result = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if bare == "*" or bare == name:
                result = not negated
        return result

    sources = {
        value.split()[0].rstrip("/")
        for _, (_, body) in stages().items()
        for inst, value in body
        if inst == "COPY" and not value.startswith("--from")
    }
    assert sources == {"requirements.lock", "pyproject.toml", "config", "gateway", "bots", "models"}
    assert not [name for name in sources if ignored(name)]
    assert all(ignored(name) for name in (".git", ".venv", ".cache", "tests", "results"))


@pytest.fixture(scope="module")
def bare_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway without models: starts fast, answers /healthz."""
    models = tmp_path_factory.mktemp("no-models")
    env = {"GATEWAY_BOTS_MODELS_DIR": str(models), "GATEWAY_BOTS_TRAIN_MISSING": "false"}
    with GatewayProcess.start(free_port(), env, wait_ready=False) as gw:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(gw.url + "/healthz", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline and gw.proc.poll() is None, gw.log.read_text()
                time.sleep(0.2)
        yield gw


def test_the_healthcheck_command_itself_works(bare_gateway: GatewayProcess) -> None:
    (health,) = instructions("HEALTHCHECK")
    command = json.loads(health[health.index("CMD") + 3 :])
    assert command[0] == "python"
    ok = subprocess.run(
        [sys.executable, *command[1:]], env={"GATEWAY_SERVER_PORT": str(bare_gateway.port)}, timeout=30
    )
    assert ok.returncode == 0
    down = subprocess.run(
        [sys.executable, *command[1:]],
        env={"GATEWAY_SERVER_PORT": str(free_port())},
        capture_output=True,
        timeout=30,
    )
    assert down.returncode != 0


# ---------------------------------------------------------------- Kubernetes

OVERLAYS = ("light", "diet-ted")
# Env names the coordinator's merge brings: the management listener (branch `surface`) adds the settings
# server.management_host / server.management_port. Listed here until config/gateway.yml has them.
MANAGEMENT_ENV = {"GATEWAY_SERVER_MANAGEMENT_HOST", "GATEWAY_SERVER_MANAGEMENT_PORT"}
MANAGEMENT_PORT = 9090
# docs/performance.md: DIET/TED bots, one gateway process (MB = 10^6 bytes).
DIET_TED_MB_PER_LANG = 349
DIET_TED_START_SECONDS = 25


@pytest.fixture(scope="session")
def tools() -> Path:
    """The checkers' own virtualenv (scripts/dev-tools: pinned, made once, reused while the lock holds)."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "dev-tools")], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr
    return ROOT / done.stdout.strip().splitlines()[-1]


def kustomize(path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` (kustomize built into kubectl) of a kustomization folder: the applied objects."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render config/kubernetes (it embeds kustomize): install kubectl"
    done = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize(K8S_DIR / "overlays" / name) for name in OVERLAYS}


def with_operator(tmp_path: Path, overlay: str) -> list[dict[str, Any]]:
    """An overlay with the Prometheus Operator component, as the overlays' comments say to add it."""
    folder = tmp_path / "with-operator"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes only relative paths to other kustomizations
                "resources": [os.path.relpath(K8S_DIR / "overlays" / overlay, folder)],
                "components": [os.path.relpath(K8S_DIR / "components" / "prometheus-operator", folder)],
            }
        )
    )
    return kustomize(folder)


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


def container_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def validate(tools: Path, docs: list[dict[str, Any]], folder: Path) -> subprocess.CompletedProcess[str]:
    """kubernetes-validate --strict against the newest bundled Kubernetes schemas, one file per object."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, doc in enumerate(docs):
        files.append(folder / f"{index:02d}-{doc['kind']}.yaml")
        files[-1].write_text(yaml.safe_dump(doc))
    return subprocess.run(
        [str(tools / "bin" / "kubernetes-validate"), "--strict", "-k", K8S_VERSION, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def setting_env_names() -> set[str]:
    """GATEWAY_* names the settings loader accepts (scalar leaves of config/gateway.yml)."""

    def leaves(node: dict[str, Any], prefix: str) -> Iterator[str]:
        for key, value in node.items():
            name = f"{prefix}_{key}".upper()
            if isinstance(value, dict):
                yield from leaves(value, name)
            else:
                yield name

    return set(leaves(yaml.safe_load(DEFAULT_CONFIG.read_text()), "GATEWAY")) | {"GATEWAY_CONFIG"}


def test_every_overlay_renders_to_valid_current_kubernetes(
    tools: Path, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    base = yaml.safe_load((K8S_DIR / "base" / "kustomization.yaml").read_text())["resources"]
    assert sorted(base) == sorted(
        p.name for p in (K8S_DIR / "base").glob("*.yaml") if p.name != "kustomization.yaml"
    )
    for name, docs in rendered.items():
        assert {d["kind"] for d in docs} == {
            "ConfigMap",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
        }, name
        done = validate(tools, docs, tmp_path / name)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count(f"against version {K8S_VERSION.rsplit('.', 1)[0]}") == len(docs), done.stdout


def test_the_validator_rejects_broken_manifests(
    tools: Path, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    deployment = copy.deepcopy(one(rendered["light"], "Deployment"))
    deployment["spec"]["replicas"] = "two"
    assert validate(tools, [deployment], tmp_path / "type").returncode != 0
    deployment = copy.deepcopy(one(rendered["light"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]["httpGets"] = {}
    assert validate(tools, [deployment], tmp_path / "unknown-field").returncode != 0


def test_deployment_matches_the_gateway(rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    settings = load_settings(env={})
    routes = {r.resource.canonical for r in create_app(settings).router.routes() if r.resource}
    for name, docs in rendered.items():
        deployment, configmap = one(docs, "Deployment"), one(docs, "ConfigMap")
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        container = container_of(docs)
        assert spec["replicas"] >= 2
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": settings.server.port, "management": MANAGEMENT_PORT}
        env = {e["name"]: e for e in container["env"]}
        assert env["GATEWAY_SERVER_MANAGEMENT_PORT"]["value"] == str(MANAGEMENT_PORT)
        assert env["GATEWAY_SERVER_MANAGEMENT_HOST"]["value"] == "0.0.0.0"
        # Probes on the public port (it keeps /healthz and /readyz); liveness waits for the startup probe.
        assert container["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert {"/readyz", "/healthz"} <= routes
        assert "initialDelaySeconds" not in container["livenessProbe"]
        annotations = spec["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(MANAGEMENT_PORT)
        assert annotations["prometheus.io/path"] == "/metrics"
        assert pod["enableServiceLinks"] is False and pod["automountServiceAccountToken"] is False
        # TensorFlow's thread pools follow the CPU limit (Rasa reads these variables).
        for variable in ("TF_INTRA_OP_PARALLELISM_THREADS", "TF_INTER_OP_PARALLELISM_THREADS"):
            ref = env[variable]["valueFrom"]["resourceFieldRef"]
            assert ref == {"containerName": container["name"], "resource": "limits.cpu", "divisor": "1"}
        # Grace period covers the preStop drain and the gateway's own shutdown timeout.
        sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
        config_file = tmp_path / f"{name}-gateway.yml"
        config_file.write_text(configmap["data"]["gateway.yml"])
        deployed = load_settings(config_file, env={})  # the ConfigMap is a valid gateway config
        assert pod["terminationGracePeriodSeconds"] > sleep + deployed.server.shutdown_timeout_seconds
        assert deployed.server.port == settings.server.port
        assert not deployed.train_missing
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
        mounted = {v["name"] for v in pod["volumes"] if "configMap" in v}
        assert {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v} == {
            configmap["metadata"]["name"]
        }
        mount = next(m for m in container["volumeMounts"] if m["name"] in mounted)
        assert env["GATEWAY_CONFIG"]["value"] == f"{mount['mountPath']}/gateway.yml"
    assert instructions("USER")[-1] == "10001:10001"


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_resources_are_sized_from_the_measurements(rendered: dict[str, list[dict[str, Any]]]) -> None:
    performance = (ROOT / "docs" / "performance.md").read_text()
    assert f"Memory: {DIET_TED_MB_PER_LANG} MB per language" in performance
    assert f"need 21-{DIET_TED_START_SECONDS} s" in performance
    assert f"{MEASURED_RSS_MIB} MiB" in (K8S_DIR / "base" / "deployment.yaml").read_text()
    langs = len(load_settings(env={}).bots)
    diet_ted_mib = DIET_TED_MB_PER_LANG * 1e6 / 2**20
    measured = {"light": MEASURED_RSS_MIB, "diet-ted": langs * diet_ted_mib}
    swap = {"light": 30, "diet-ted": diet_ted_mib}  # one language's model loaded twice for a moment
    startup = {"light": 60, "diet-ted": DIET_TED_START_SECONDS * 3}  # a slower node than the measuring one
    for name, docs in rendered.items():
        container = container_of(docs)
        resources = container["resources"]
        request, limit = mebibytes(resources["requests"]["memory"]), mebibytes(resources["limits"]["memory"])
        assert request >= measured[name] * 1.1, name
        assert limit >= measured[name] + swap[name] + 256, name  # + arenas and a burst of requests
        probe = container["startupProbe"]
        assert probe["periodSeconds"] * probe["failureThreshold"] >= startup[name], name
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env.get("GATEWAY_SERVER_INFERENCE") == ("thread" if name == "diet-ted" else None)


def test_secrets_are_references_only(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for docs in rendered.values():
        assert [d for d in docs if d["kind"] == "Secret"] == []
        env = {e["name"]: e for e in container_of(docs)["env"]}
        for name in ("GATEWAY_ADMIN_TOKEN", "GATEWAY_REDIS_URL", "GATEWAY_MODELS_S3_SECRET_ACCESS_KEY"):
            assert "secretKeyRef" in env[name]["valueFrom"]
        for name, item in env.items():
            if SECRET_NAME.search(name):
                assert "value" not in item, f"{name} has an inline value"
        assert {name for name in env if name.startswith("GATEWAY_")} <= setting_env_names() | MANAGEMENT_ENV
    for path in K8S_DIR.rglob("*.yaml"):
        assert not CREDENTIAL.search(path.read_text()), path


def test_services_hpa_pdb_and_network_policy_select_the_deployment(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["light"]
    deployment = one(docs, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    name = deployment["metadata"]["name"]
    public, management = one(docs, "Service", name), one(docs, "Service", f"{name}-management")
    for service, port in ((public, "http"), (management, "management")):
        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["selector"].items() <= labels.items()
        assert [p["targetPort"] for p in service["spec"]["ports"]] == [port]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}}}
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    public_rule, management_rule = policy["spec"]["ingress"]
    assert public_rule == {"ports": [{"port": "http", "protocol": "TCP"}]}  # from anywhere, port 8080 only
    assert management_rule == {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"port": "management", "protocol": "TCP"}],
    }
    external = {
        s["metadata"]["name"] for s in docs if s["kind"] == "Service" and s["spec"]["type"] == "ExternalName"
    }
    assert external == {"gateway-redis", "gateway-model-store"}


def exported_metrics() -> dict[str, set[str]]:
    """Every series name gateway/metrics.py defines (with _total/_bucket/... suffixes) -> its label names.

    Read from the metric objects, not from a registry's samples (a multiprocess registry shows only
    series some process wrote).
    """
    from prometheus_client.metrics import MetricWrapperBase

    from gateway import metrics

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "info": ["_info"]}
    out: dict[str, set[str]] = {}
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):
            for suffix in suffixes.get(collector._type, [""]):
                extra = {"le"} if suffix == "_bucket" else set()
                out[collector._name + suffix] = set(collector._labelnames) | extra
    return out


def test_prometheus_operator_component_scrapes_management_and_alerts_on_real_metrics(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    docs = with_operator(tmp_path, "diet-ted")
    assert [d for d in docs if d["kind"] not in {"ServiceMonitor", "PrometheusRule"}] == rendered["diet-ted"]
    monitor, rule = one(docs, "ServiceMonitor"), one(docs, "PrometheusRule")
    assert monitor["apiVersion"] == rule["apiVersion"] == "monitoring.coreos.com/v1"
    management = one(docs, "Service", "rasa-gateway-management")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= management["metadata"]["labels"].items()
    assert (
        not one(docs, "Service", "rasa-gateway")["metadata"]["labels"].items()
        >= monitor["spec"]["selector"]["matchLabels"].items()
    )  # the public Service is not scraped
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in management["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"

    exported = exported_metrics()
    # Added by Prometheus itself when it scrapes through a ServiceMonitor.
    target_labels = {"namespace", "pod", "service", "job", "instance", "container", "endpoint"}
    alerts = {}
    for group in rule["spec"]["groups"]:
        for item in group["rules"]:
            alerts[item["alert"]] = item
            expr = item["expr"]
            names = set(re.findall(r"\b(gateway_[a-z_]+)", expr))
            assert names and names <= exported.keys(), (item["alert"], names - exported.keys())
            known = set().union(*(exported[n] for n in names)) | target_labels
            grouped = {label.strip() for by in re.findall(r"by \(([^)]*)\)", expr) for label in by.split(",")}
            matched = set(re.findall(r"[{,]\s*([a-z_]+)\s*[=!~]", expr))
            assert grouped | matched <= known, (item["alert"], (grouped | matched) - known)
            assert item["labels"]["severity"] in {"critical", "warning"}
            assert item["annotations"]["summary"]
    assert {
        "RasaGatewayBotDown",
        "RasaGatewayErrorRate",
        "RasaGatewayApologyRate",
        "RasaGatewaySlowAnswers",
        "RasaGatewaySwapFailed",
        "RasaGatewayRedisErrors",
    } <= alerts.keys()
    # The "over the deadline" bucket exists: the deadline is one of the latency histogram's bounds.
    deadline = load_settings(env={}).server.deadline_seconds
    assert f'le="{deadline}"' in alerts["RasaGatewaySlowAnswers"]["expr"]
    from gateway import metrics

    assert deadline in metrics._LATENCY_BUCKETS


# ---------------------------------------------------------------- CI templates


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key), value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def gitlab_jobs() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((CI_DIR / ".gitlab-ci.yml").read_text())
    jobs = {}
    for name, job in data.items():
        if (
            name.startswith(".")
            or not isinstance(job, dict)
            or ("extends" not in job and "script" not in job)
        ):
            continue
        base = data.get(job.get("extends", ""), {})
        merged = {**base, **job, "variables": {**base.get("variables", {}), **job.get("variables", {})}}
        jobs[name] = merged
    return jobs


def test_gitlab_checks_merge_requests_and_never_interrupts_a_publish() -> None:
    langs = sorted(load_settings(env={}).bots)
    jobs = gitlab_jobs()
    kinds: dict[str, dict[str, dict[str, Any]]] = {}
    for name, job in jobs.items():
        kind, _, lang = name.partition(":")
        assert job["variables"]["BOT_LANG"] == lang
        kinds.setdefault(kind, {})[lang] = job
    assert sorted(kinds) == ["check", "deliver", "promote"]
    assert all(sorted(by_lang) == langs for by_lang in kinds.values())
    for lang, job in kinds["check"].items():  # merge requests: the whole pipeline but the publish
        assert job["interruptible"] is True
        script = " ".join(job["script"])
        assert "-m gateway pipeline --no-publish" in script and '--lang "$BOT_LANG"' in script
        assert '--since "$CI_MERGE_REQUEST_DIFF_BASE_SHA"' in script
        assert job["rules"] == [
            {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"', "changes": [f"bots/{lang}/**/*"]}
        ]
        assert "environment" not in job and not any(SECRET_NAME.search(k) for k in job["variables"])
    for lang, job in kinds["deliver"].items():  # the default branch: publish to staging
        assert job["interruptible"] is False
        assert job["resource_group"] == "deliver-staging-$BOT_LANG"  # one publish per language
        assert job["environment"] == {"name": "staging"}
        assert job["variables"]["GATEWAY_ENVIRONMENT"] == "staging"
        script = " ".join(job["script"])
        assert "-m gateway pipeline --lang" in script and "--no-publish" not in script
        assert job["rules"][0]["changes"] == [f"bots/{lang}/**/*"]
        assert job["retry"]["exit_codes"] == [3]  # only "unreachable" is worth a retry
    for job in kinds["promote"].values():
        assert job["interruptible"] is False
        assert job["environment"] == {"name": "production"}
        assert job["resource_group"] == "deliver-production-$BOT_LANG"
        assert job["rules"][0]["when"] == "manual"
        assert 'promote "$BOT_LANG" --from staging --to production' in " ".join(job["script"])


def github_workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CI_DIR / "github-actions.yml").read_text())
    return data


def test_github_checks_pull_requests_and_never_cancels_a_publish() -> None:
    data = github_workflow()
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads the bare key `on` as true
    assert {"pull_request", "push", "workflow_dispatch"} <= triggers.keys()
    jobs = data["jobs"]
    langs = sorted(load_settings(env={}).bots)
    check, deliver, promote = jobs["check"], jobs["deliver"], jobs["promote"]
    for job in (check, deliver):
        assert sorted(job["strategy"]["matrix"]["lang"]) == langs
        checkout = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout"))
        assert checkout["with"]["fetch-depth"] == 0
    runs = " ".join(step.get("run", "") for step in check["steps"])
    assert check["if"] == "github.event_name == 'pull_request'"
    assert "-m gateway pipeline --no-publish" in runs and '--lang "${{ matrix.lang }}"' in runs
    assert "github.event.pull_request.base.sha" in runs
    assert check["concurrency"]["cancel-in-progress"] is True  # a check may be cut off: it publishes nothing
    assert "environment" not in check and "env" not in check  # no secret reaches pull requests

    runs = " ".join(step.get("run", "") for step in deliver["steps"])
    assert deliver["if"] == "github.event_name == 'push'"
    assert "-m gateway pipeline --lang" in runs and "--no-publish" not in runs
    assert deliver["environment"] == "staging" and deliver["env"]["GATEWAY_ENVIRONMENT"] == "staging"
    # Per language, not per push: a newer push queues behind a running publish instead of cancelling it.
    assert deliver["concurrency"] == {
        "group": "deliver-staging-${{ matrix.lang }}",
        "cancel-in-progress": False,
    }

    assert promote["if"] == "github.event_name == 'workflow_dispatch'"
    assert promote["environment"] == "production"
    assert promote["concurrency"]["cancel-in-progress"] is False
    assert triggers["workflow_dispatch"]["inputs"]["lang"]["options"] == list(load_settings(env={}).bots)
    (step,) = promote["steps"]
    assert step["run"] == 'python -m gateway promote "${{ inputs.lang }}" --from staging --to production'


@pytest.mark.parametrize(
    ("name", "schema", "break_it"),
    [
        (
            ".gitlab-ci.yml",
            "vendor.gitlab-ci",
            lambda data: data["promote:en"]["rules"][0].update(when="manually"),
        ),
        (
            "github-actions.yml",
            "vendor.github-workflows",
            lambda data: data["jobs"]["deliver"]["concurrency"].update({"cancel-in-progres": False}),
        ),
    ],
)
def test_ci_templates_match_their_platforms_schemas(
    tools: Path, name: str, schema: str, break_it: Any, tmp_path: Path
) -> None:
    """check-jsonschema's vendored (offline) GitLab CI and GitHub workflow schemas."""
    checker = str(tools / "bin" / "check-jsonschema")
    done = subprocess.run(
        [checker, "--builtin-schema", schema, str(CI_DIR / name)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = yaml.safe_load((CI_DIR / name).read_text())
    if True in data:  # YAML 1.1 read the bare key `on` as true: write it back as `on`
        data["on"] = data.pop(True)
    break_it(data)
    broken = tmp_path / name
    broken.write_text(yaml.safe_dump(data))
    rejected = subprocess.run(
        [checker, "--builtin-schema", schema, str(broken)], capture_output=True, text=True, timeout=120
    )
    assert rejected.returncode == 1, rejected.stdout + rejected.stderr


@pytest.mark.parametrize("name", [".gitlab-ci.yml", "github-actions.yml"])
def test_ci_templates_say_nothing_stale(name: str) -> None:
    text = (CI_DIR / name).read_text()
    for stale in ("once publishing is wired in", "cancels the running job", "cancels the running jobs"):
        assert stale not in text, f"{name}: {stale!r}"
    commands = _gateway_commands()
    for line in text.splitlines():  # every command a comment names is one the gateway has
        for command in re.findall(r"`gateway ([\w-]+)", line):
            assert command in commands, line


def _gateway_commands() -> set[str]:
    """The CLI's own subcommands (gateway/cli.py), so a new command needs no edit here."""
    from gateway import cli

    parser = cli._parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


@pytest.mark.parametrize("name", [".gitlab-ci.yml", "github-actions.yml"])
def test_ci_templates_inline_no_secret(name: str) -> None:
    path = CI_DIR / name
    text = path.read_text()
    data = yaml.safe_load(text)
    assert not CREDENTIAL.search(text)
    for key, value in walk(data):
        if key.startswith("GATEWAY_") and not isinstance(value, dict):
            assert key in setting_env_names(), f"{key} is not a gateway setting"
        if SECRET_NAME.search(key) and not isinstance(value, dict | list):
            if name == ".gitlab-ci.yml":
                pytest.fail(f"{key} is set in {name}: secrets belong in the project's CI/CD variables")
            assert re.fullmatch(r"\$\{\{ secrets\.[A-Z0-9_]+ \}\}", str(value)), f"{key}: {value!r}"


def test_ci_templates_call_real_commands() -> None:
    """The flags the templates pass exist: `gateway pipeline --help` lists them."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "pipeline", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "--since REV" in done.stdout and "--lang LANG" in done.stdout and "--no-publish" in done.stdout


def test_the_pipeline_accepts_what_ci_passes_for_a_first_push(tmp_path: Path) -> None:
    """CI's 000...0 / empty 'before' revision means every bot: no git error, no crash."""
    from gateway.delivery.changes import changed_languages

    for since in ("0" * 40, ""):
        assert list(changed_languages(ROOT / "bots", ["en", "pl", "de"], since)) == ["en", "pl", "de"]
