"""Deployment files checked offline against the gateway's real settings and routes.

Dockerfile with dockerfile-parse, Kubernetes manifests with kubernetes-validate's bundled schemas,
CI templates as YAML.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from gateway.app import create_app
from gateway.settings import DEFAULT_CONFIG, ROOT, load_settings
from tests.support import GatewayProcess, free_port

K8S_DIR = ROOT / "config" / "kubernetes"
CI_DIR = ROOT / "config" / "ci"
K8S_VERSION = "1.28.0"  # the newest schema set kubernetes-validate 1.28.3 bundles
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
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
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
    assert sources == {"requirements.lock", "pyproject.toml", "config", "gateway", "models"}
    assert not [name for name in sources if ignored(name)]
    assert all(ignored(name) for name in (".git", ".venv", ".cache", "tests", "bots", "results"))


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


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] == kind]


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


def test_manifests_are_valid_kubernetes_offline() -> None:
    docs = manifests()
    assert {doc["kind"] for doc in docs} >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "PodDisruptionBudget",
    }
    for doc in docs:
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == "1.28"
    listed = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def test_the_validator_rejects_a_broken_manifest() -> None:
    (deployment,) = by_kind("Deployment")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment["spec"]["replicas"] = 2
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGets"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_deployment_matches_the_gateway() -> None:
    (deployment,) = by_kind("Deployment")
    (configmap,) = by_kind("ConfigMap")
    settings = load_settings(env={})
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] >= 2
    port = container["ports"][0]
    assert port["containerPort"] == settings.server.port and port["name"] == "http"
    routes = {r.resource.canonical for r in create_app(settings).router.routes() if r.resource}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(settings.server.port)
    assert annotations["prometheus.io/path"] == "/metrics"
    # Sized from the measured RSS, with headroom; the limit above the request.
    memory = container["resources"]["requests"]["memory"]
    assert memory.endswith("Mi") and int(memory[:-2]) >= MEASURED_RSS_MIB * 1.1
    assert container["resources"]["limits"]["memory"] == "1Gi"
    assert "559 MiB" in (K8S_DIR / "deployment.yaml").read_text()
    # Grace period covers the preStop drain and the gateway's own shutdown timeout.
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    config_file = K8S_DIR / "gateway-from-configmap.yml"
    try:
        config_file.write_text(configmap["data"]["gateway.yml"])
        deployed = load_settings(config_file, env={})  # the ConfigMap is a valid gateway config
    finally:
        config_file.unlink()
    assert pod["terminationGracePeriodSeconds"] > sleep + deployed.server.shutdown_timeout_seconds
    assert deployed.server.port == settings.server.port
    assert not deployed.train_missing
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    assert instructions("USER")[-1] == "10001:10001"
    mounted = {v["name"] for v in pod["volumes"] if "configMap" in v}
    assert {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v} == {
        configmap["metadata"]["name"]
    }
    config_env = next(e for e in container["env"] if e["name"] == "GATEWAY_CONFIG")
    mount = next(m for m in container["volumeMounts"] if m["name"] in mounted)
    assert config_env["value"] == f"{mount['mountPath']}/gateway.yml"


def test_secrets_are_references_only() -> None:
    assert by_kind("Secret") == []
    (deployment,) = by_kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("GATEWAY_ADMIN_TOKEN", "GATEWAY_REDIS_URL", "GATEWAY_MODELS_S3_SECRET_ACCESS_KEY"):
        assert "secretKeyRef" in env[name]["valueFrom"]
    for name, item in env.items():
        if SECRET_NAME.search(name):
            assert "value" not in item, f"{name} has an inline value"
    assert {name for name in env if name.startswith("GATEWAY_")} <= setting_env_names()
    for path in K8S_DIR.glob("*.yaml"):
        assert not CREDENTIAL.search(path.read_text()), path


def test_service_hpa_and_pdb_select_the_deployment() -> None:
    (deployment,) = by_kind("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    name = deployment["metadata"]["name"]
    service = next(s for s in by_kind("Service") if s["spec"]["type"] == "ClusterIP")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    (hpa,) = by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert hpa["spec"]["minReplicas"] >= 2
    (pdb,) = by_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    external = {s["metadata"]["name"] for s in by_kind("Service") if s["spec"]["type"] == "ExternalName"}
    assert external == {"gateway-redis", "gateway-model-store"}


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


@pytest.mark.parametrize("name", [".gitlab-ci.yml", "github-actions.yml"])
def test_ci_templates_say_nothing_stale(name: str) -> None:
    text = (CI_DIR / name).read_text()
    for stale in ("once publishing is wired in", "cancels the running job", "cancels the running jobs"):
        assert stale not in text, f"{name}: {stale!r}"
    for line in text.splitlines():  # every command a comment names is one the gateway has
        for command in re.findall(r"`gateway (\w+)", line):
            assert command in {"pipeline", "promote", "publish", "test", "train"}, line


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
