"""The hashed locks: what `make setup`, the Dockerfile and scripts/dev-tools install with --require-hashes.

Offline: the locks are read with scripts/lockfiles.py, the same model scripts/check-lock-platforms
compares with pip's own per-platform resolution against the registry (docs/operations.md "Locks"). The
platforms are pyproject.toml's [tool.uv] environments, which `make lock` resolves for.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shlex
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts import lockfiles

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = {p.name: p for p in lockfiles.platforms()}
LOCKS = (lockfiles.RUNTIME, lockfiles.DEV, lockfiles.TOOLS)


def test_the_locks_cover_linux_x86_64_and_aarch64_and_macos_arm64_on_cpython_3_10() -> None:
    assert list(PLATFORMS) == ["linux-x86_64", "linux-aarch64", "darwin-arm64"]
    assert {p.python_version for p in PLATFORMS.values()} == {"3.10"}
    # `make setup` refuses other platforms (pip would install nothing from the locks there): same list.
    check = re.search(r"define PLATFORM_CHECK\n(.*?)\nendef", (ROOT / "Makefile").read_text(), re.S)
    assert check, "Makefile: no PLATFORM_CHECK"
    refused = set(re.findall(r'\("(\w+)", "(\w+)"\): "', check.group(1)))
    assert refused == {(p.sys_platform, p.machine) for p in PLATFORMS.values()}


@pytest.mark.parametrize("lock", LOCKS)
def test_every_requirement_is_pinned_hashed_and_confined_to_the_locked_platforms(lock: str) -> None:
    pins = lockfiles.pins(lock)  # raises naming the line when one is not name==version
    assert len(pins) >= 20
    elsewhere = [
        lockfiles.Platform("", "win32", "AMD64", "3.10"),
        lockfiles.Platform("", "darwin", "x86_64", "3.10"),
        lockfiles.Platform("", "linux", "x86_64", "3.11"),  # Rasa 3.6 needs <3.11
    ]
    for pin in pins:
        where = f"{lock}:{pin.line} {pin.name}=={pin.version}"
        assert pin.hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in pin.hashes), where
        assert any(pin.applies(p) for p in PLATFORMS.values()), f"{where} applies to no locked platform"
        assert not any(pin.applies(p) for p in elsewhere), f"{where} applies outside the locked platforms"


@pytest.mark.parametrize("name", list(PLATFORMS))
@pytest.mark.parametrize("install", sorted(lockfiles.INSTALLS))
def test_each_install_pins_one_version_of_each_package_per_platform(install: str, name: str) -> None:
    chosen = lockfiles.selection(lockfiles.INSTALLS[install], PLATFORMS[name])
    # The dev lock repeats a runtime pin only where the runtime lock has no line for that platform, at the
    # same version: one command installs both.
    twice = {
        n: [f"{p.lock}:{p.line} {p.version}" for p in pins] for n, pins in chosen.items() if len(pins) > 1
    }
    assert not {n: v for n, v in twice.items() if len({s.rsplit(" ", 1)[1] for s in v}) > 1}, twice
    assert len(chosen) >= 20


def requirements_of(dist: str, target: lockfiles.Platform) -> list[Requirement]:
    """The installed distribution's own requirements (no extras) that hold on a platform."""
    found = []
    for text in importlib.metadata.requires(dist) or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({**target.environment(), "extra": ""}):
            found.append(req)
    return found


@pytest.mark.parametrize("name", list(PLATFORMS))
def test_the_runtime_lock_meets_rasas_own_requirements_on_each_platform(name: str) -> None:
    target = PLATFORMS[name]
    chosen = lockfiles.selection(lockfiles.INSTALLS["setup"], target)
    for req in requirements_of("rasa", target):
        key = canonicalize_name(req.name)
        assert key in chosen, f"rasa needs {req} on {name}; the locks have no line for it there"
        assert all(req.specifier.contains(p.version, prereleases=True) for p in chosen[key]), (
            req,
            chosen[key],
        )


def test_tensorflow_is_the_platforms_own_build_and_tensorflow_text_only_where_it_exists() -> None:
    def tensorflow(name: str) -> set[str]:
        chosen = lockfiles.selection((lockfiles.RUNTIME,), PLATFORMS[name])
        builds = {n for n in chosen if n.startswith("tensorflow")}
        return builds - {"tensorflow-hub", "tensorflow-estimator"}  # pure Python, everywhere

    # Rasa 3.6.21's metadata: tensorflow-text has no arm64/aarch64 wheels, so it is left out there (the bots
    # here use no component that needs it); macOS arm64 gets tensorflow-macos, Linux aarch64 AWS's build.
    assert tensorflow("linux-x86_64") == {"tensorflow", "tensorflow-io-gcs-filesystem", "tensorflow-text"}
    assert tensorflow("linux-aarch64") == {"tensorflow", "tensorflow-cpu-aws", "tensorflow-io-gcs-filesystem"}
    assert tensorflow("darwin-arm64") == {"tensorflow-macos"}
    # Rasa imports tensorflow_text only for ConveRTFeaturizer: no bot may use it while the locks leave it out.
    configs = sorted((ROOT / "bots").glob("*/config*.yml"))
    assert configs and not [c for c in configs if "ConveRTFeaturizer" in c.read_text()]


def test_the_tested_environment_is_what_the_locks_pin_here() -> None:
    here = (sys.platform, platform.machine())
    target = next((p for p in PLATFORMS.values() if (p.sys_platform, p.machine) == here), None)
    assert target, f"{here} is not a locked platform (pyproject.toml [tool.uv] environments)"
    chosen = lockfiles.selection(lockfiles.INSTALLS["setup"], target)
    drift = {}
    for name, pins in chosen.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "missing"
        if installed not in {p.version for p in pins}:
            drift[name] = f"installed {installed}, locked {pins[0].version} ({pins[0].lock}:{pins[0].line})"
    assert not drift, f"the virtualenv is not the locks' (rerun `make setup`): {drift}"


def pip_installs(text: str) -> list[list[str]]:
    """The `pip install` commands of a Makefile, Dockerfile RUNs or a script, as words."""
    lines = text.replace("\\\n", " ").splitlines()
    parts = [part for line in lines for part in line.split("&&")]
    return [shlex.split(part) for part in parts if re.search(r"\bpip install\b", part)]


def test_every_install_of_a_lock_requires_hashes_and_the_editable_install_stays_apart() -> None:
    makefile = (ROOT / "Makefile").read_text()
    setup = [c for c in pip_installs(makefile) if "-r" in c]
    assert len(setup) == 1 and {"requirements.lock", "requirements-dev.lock"} <= set(setup[0])
    assert "--require-hashes" in setup[0], setup
    # The project itself is no lock entry: its own command, without dependencies, so no hashes to check.
    (editable,) = [c for c in pip_installs(makefile) if "-e" in c]
    assert "--no-deps" in editable and "-r" not in editable

    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    runs = "\n".join(i["value"] for i in parser.structure if i["instruction"] == "RUN")
    image = [c for c in pip_installs(runs) if "-r" in c]
    assert len(image) == 1 and image[0][1:] == ["install", "--require-hashes", "-r", "/tmp/requirements.lock"]

    tools = [c for c in pip_installs((ROOT / "scripts" / "dev-tools").read_text()) if "-r" in c]
    assert len(tools) == 1 and "--require-hashes" in tools[0] and tools[0][-1] == "$lock", tools
