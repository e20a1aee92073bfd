"""The hashed locks as data: their pins, and which of them each locked platform installs.

`make lock` (scripts/lock) resolves every lock once for all the platforms in pyproject.toml
[tool.uv] environments; each line carries the markers of the platforms it applies to. pip evaluates those
markers where it runs, so a platform's install is the set of lines whose marker holds there. This module
computes that set the way pip does, for tests/test_locks.py (offline) and scripts/check-lock-platforms
(the networked dry run per platform). Run it with the project's interpreter: it needs `packaging` and, on
Python 3.10, `tomli` (both in .venv).
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
RUNTIME, DEV, TOOLS = "requirements.lock", "requirements-dev.lock", "requirements-tools.lock"
# What one pip invocation installs together: `make setup` takes the runtime and dev locks in one command
# (the dev lock leaves out what the runtime lock pins everywhere); scripts/dev-tools takes the tools alone.
INSTALLS: dict[str, tuple[str, ...]] = {"setup": (RUNTIME, DEV), "tools": (TOOLS,)}

# Wheel platform tags pip accepts on each locked platform, newest first, for `pip --platform`.
# Linux: glibc 2.28 or newer (manylinux_2_28, as the Linux x86_64 lock has been resolved since the start;
# python:3.10-slim has 2.36). macOS: 12 or newer (tensorflow-macos 2.12 ships macosx_12_0_arm64 wheels
# only); pip widens macosx_12_0_arm64 to every older macOS tag and universal2 itself.
_MANYLINUX = tuple(f"manylinux_2_{minor}" for minor in range(28, 16, -1))
PIP_PLATFORMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("linux", "x86_64"): (
        *(f"{tag}_x86_64" for tag in _MANYLINUX),
        "manylinux2014_x86_64",  # pip widens it to manylinux2010 and manylinux1
    ),
    ("linux", "aarch64"): (*(f"{tag}_aarch64" for tag in _MANYLINUX), "manylinux2014_aarch64"),
    ("darwin", "arm64"): ("macosx_12_0_arm64",),
}
_SYSTEM = {"linux": "Linux", "darwin": "Darwin", "win32": "Windows"}


@dataclass(frozen=True)
class Platform:
    """One entry of pyproject.toml [tool.uv] environments."""

    marker: str
    sys_platform: str
    machine: str
    python_version: str

    @property
    def name(self) -> str:
        return f"{self.sys_platform}-{self.machine}"

    def environment(self) -> dict[str, str]:
        """The PEP 508 marker environment of a CPython of this version on this platform."""
        return {
            "implementation_name": "cpython",
            "implementation_version": f"{self.python_version}.0",
            "os_name": "nt" if self.sys_platform == "win32" else "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": _SYSTEM[self.sys_platform],
            "platform_version": "",
            "python_full_version": f"{self.python_version}.0",
            "python_version": self.python_version,
            "sys_platform": self.sys_platform,
        }

    def pip_platforms(self) -> tuple[str, ...]:
        return PIP_PLATFORMS[(self.sys_platform, self.machine)]


def platforms(root: Path = ROOT) -> list[Platform]:
    """The locked platforms, from pyproject.toml [tool.uv] environments (each a conjunction of `==`)."""
    with (root / "pyproject.toml").open("rb") as f:
        environments = tomllib.load(f)["tool"]["uv"]["environments"]
    found = []
    for marker in environments:
        terms = dict(re.findall(r"(\w+) == '([^']*)'", marker))
        where = f"pyproject.toml [tool.uv] environments: {marker!r}"
        if " or " in marker or len(terms) != marker.count(" and ") + 1:
            raise ValueError(f"{where} is not a conjunction of `==`")
        if terms.get("platform_python_implementation") != "CPython":
            raise ValueError(f"{where} is not CPython")
        platform = Platform(marker, terms["sys_platform"], terms["platform_machine"], terms["python_version"])
        found.append(platform)
    return found


@dataclass(frozen=True)
class Pin:
    """One requirement line of a lock: `name==version ; marker` and its `--hash=sha256:` values."""

    lock: str
    line: int
    name: str
    version: str
    marker: str  # "" when the line applies everywhere
    hashes: frozenset[str]

    def applies(self, platform: Platform) -> bool:
        return not self.marker or _holds(self.marker, platform)


@functools.cache
def _holds(marker: str, platform: Platform) -> bool:
    # A lock repeats a handful of marker strings hundreds of times; packaging parses each once here.
    return Marker(marker).evaluate(platform.environment())


PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;,<>=!~\[\]@]+)")


def pins(lock: str, root: Path = ROOT) -> list[Pin]:
    """Every requirement of a lock; a line that is not `name==version` with hashes is an error naming it."""
    found = []
    start = 0
    logical = ""
    for number, raw in enumerate((root / lock).read_text().splitlines(), 1):
        if not logical:
            start = number
        logical += raw.rstrip("\\").strip() + " "
        if raw.endswith("\\"):
            continue
        text, logical = logical.split(" #")[0].strip(), ""
        if not text or text.startswith("#"):
            continue
        spec, *options = text.split(" --")
        hashes = frozenset(o.removeprefix("hash=sha256:") for o in options if o.startswith("hash=sha256:"))
        if len(hashes) != len(options):
            raise ValueError(f"{lock}:{start}: options other than --hash=sha256: in {text[:80]!r}")
        requirement, _, marker = (part.strip() for part in spec.partition(";"))
        pinned = PIN.fullmatch(requirement)
        if not pinned:
            raise ValueError(f"{lock}:{start}: {requirement[:80]!r} is not pinned as name==version")
        name, version = pinned.groups()
        found.append(Pin(lock, start, canonicalize_name(name), version, marker, hashes))
    return found


def selection(locks: tuple[str, ...], platform: Platform, root: Path = ROOT) -> dict[str, list[Pin]]:
    """What pip installs from these locks on a platform: name -> the pins whose marker holds there."""
    chosen: dict[str, list[Pin]] = {}
    for lock in locks:
        for pin in pins(lock, root):
            if pin.applies(platform):
                chosen.setdefault(pin.name, []).append(pin)
    return chosen
