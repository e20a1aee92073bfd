"""Untrusted model archives: checked before Rasa extracts or unpickles anything; the old model stays."""

from __future__ import annotations

import hashlib
import io
import tarfile
import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest

from gateway.agents.archive import check_members, verify_archive
from gateway.agents.pool import AgentPool, BotState
from gateway.errors import ModelError, ModelRejected, ModelStoreError
from gateway.model_names import validate_model_name, validate_sha256
from gateway.storage.model_store import LocalModelStore
from gateway.storage.trackers import tracker_stores_for
from tests.security.conftest import gateway_settings
from tests.support import responses


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", **attrs: object) -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def build(path: Path, members: Iterable[tuple], base: Path | None = None) -> Path:
    """A .tar.gz holding `base`'s members (a real model, when given) followed by `members`."""
    with tarfile.open(path, "w:gz") as out:
        if base is not None:
            with tarfile.open(base, "r:gz") as src:
                for info in src.getmembers():
                    out.addfile(info, src.extractfile(info) if info.isfile() else None)
        for info, data in members:
            out.addfile(info, data)
    return path


def escape_to(target: Path) -> str:
    """A member name that lands on `target` when extracted anywhere below /."""
    return "../" * 16 + str(target).lstrip("/")


def hostile_members(outside: Path) -> dict[str, tuple]:
    return {
        "traversal": member(escape_to(outside / "pwned.txt"), data=b"owned"),
        "nested traversal": member("components/../../pwned.txt"),
        "backslash traversal": member("components\\..\\..\\pwned.txt"),
        "absolute path": member(str(outside / "abs-pwned.txt")),
        "windows drive": member("C:/Windows/pwned.txt"),
        "symlink": member("components/passwd", tarfile.SYMTYPE, linkname="/etc/passwd"),
        "hard link": member("components/shadow", tarfile.LNKTYPE, linkname="/etc/shadow"),
        "char device": member("components/mem", tarfile.CHRTYPE, devmajor=1, devminor=1),
        "block device": member("components/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
        "fifo": member("components/pipe", tarfile.FIFOTYPE),
        "setuid file": member("components/run", mode=0o4755),
    }


@pytest.mark.parametrize(
    "case",
    [
        "traversal",
        "nested traversal",
        "backslash traversal",
        "absolute path",
        "windows drive",
        "symlink",
        "hard link",
        "char device",
        "block device",
        "fifo",
        "setuid file",
    ],
)
def test_hostile_member_is_rejected_without_extracting(tmp_path: Path, case: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    path = build(tmp_path / "model.tar.gz", [member("components/ok.json"), hostile_members(outside)[case]])
    with pytest.raises(ModelRejected, match=r"model model\.tar\.gz: member "):
        verify_archive(path, sha256(path), None, None)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("random.tar.gz", b"\x00\x01 definitely not gzip" * 100),
        ("plain-json.tar.gz", b'{"model": "x"}'),
        ("empty-file.tar.gz", b""),
    ],
)
def test_garbage_is_rejected(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelRejected, match=r"not a valid \.tar\.gz|empty archive"):
        verify_archive(path, None, None, None)


def test_truncated_and_uncompressed_archives_are_rejected(
    tmp_path: Path, model_paths: dict[str, Path]
) -> None:
    real = model_paths["en"].read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(real[: len(real) // 2])
    with pytest.raises(ModelRejected, match="not a valid"):
        check_members(truncated)
    plain = tmp_path / "plain.tar.gz"
    with tarfile.open(plain, "w") as out:  # a tar, but not gzip: Rasa would not read it either
        out.addfile(*member("components/a.json"))
    with pytest.raises(ModelRejected, match="not a valid"):
        check_members(plain)
    empty = build(tmp_path / "empty.tar.gz", [])
    with pytest.raises(ModelRejected, match="empty archive"):
        check_members(empty)


def test_real_model_passes_and_returns_its_sha256(model_paths: dict[str, Path]) -> None:
    path = model_paths["en"]
    assert verify_archive(path, None, None, None) == sha256(path)
    assert verify_archive(path, sha256(path).upper(), None, None) == sha256(path)


@pytest.mark.parametrize(
    "recorded", ["0" * 64, "f" * 64, "not-hex", "", "a" * 63, pytest.param("a" * 10_000, id="huge")]
)
def test_sha256_mismatch_or_malformed_record_is_rejected(model_paths: dict[str, Path], recorded: str) -> None:
    with pytest.raises(ModelRejected, match="sha256"):
        verify_archive(model_paths["en"], recorded, None, None)


def test_missing_archive_is_an_error_naming_only_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        verify_archive(tmp_path / "gone.tar.gz", None, None, None)
    assert str(tmp_path) not in str(caught.value)


@pytest.mark.parametrize(
    "name",
    [
        "../en/model.tar.gz",
        "../../etc/passwd",
        "/etc/passwd",
        "/models/en/model.tar.gz",
        "en/model.tar.gz",
        "..\\model.tar.gz",
        "C:\\models\\model.tar.gz",
        "model..tar.gz",
        ".hidden.tar.gz",
        "-rf.tar.gz",
        "model.tar.gz\x00.png",
        "model.tar.gz\n",
        "model.zip",
        "model.tar.gz/",
        "modèle.tar.gz",
        "",
        pytest.param("a" * 300 + ".tar.gz", id="long"),
        pytest.param("x" * 10_000_000, id="huge-event-payload"),
    ],
)
async def test_event_model_names_must_be_plain_file_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(ModelRejected) as caught:
        validate_model_name(name)
    assert isinstance(caught.value, ValueError)  # what the stores and the event parser catch
    assert len(str(caught.value)) < 300  # never echoes a huge payload into logs
    # The model store refuses the very same names (one check for every entry point).
    with pytest.raises(ModelStoreError) as refused:
        await LocalModelStore(tmp_path).info("en", name)
    assert len(str(refused.value)) < 300


@pytest.mark.parametrize("value", [None, 42, b"model.tar.gz", ["model.tar.gz"], {"model": "x.tar.gz"}])
def test_event_model_names_must_be_strings(value: object) -> None:
    with pytest.raises(ModelRejected, match="must be a string"):
        validate_model_name(value)


def test_plain_model_names_pass(model_paths: dict[str, Path]) -> None:
    for path in model_paths.values():
        assert validate_model_name(path.name) == path.name
    assert validate_model_name("20260101T000000Z-0123456789ab.tar.gz")
    assert validate_sha256(" " + "AB" * 32 + " ") == "ab" * 32


def _pool() -> AgentPool:
    settings = gateway_settings()
    return AgentPool(settings.bots, tracker_stores_for(settings))


async def _greets_in_english(pool: AgentPool) -> bool:
    messages = await pool.respond("en", f"t-{uuid.uuid4().hex}", "hello")
    return any(m.get("text") in responses("en", "utter_greet") for m in messages)


async def test_sha256_mismatch_never_loads_and_the_old_model_keeps_answering(
    model_paths: dict[str, Path],
) -> None:
    pool = _pool()
    en = model_paths["en"]
    first = await pool.load("en", en, sha256(en))
    assert first.sha256 == sha256(en)
    pl = model_paths["pl"]
    with pytest.raises(ModelRejected, match="sha256"):
        await pool.load("en", pl, sha256(en))  # the publisher recorded another archive
    bot = pool.get("en")
    assert bot.model is first
    assert bot.state is BotState.READY
    assert bot.last_error is not None and "sha256" in bot.last_error
    assert await _greets_in_english(pool)


async def test_hostile_archives_built_from_a_real_model_never_reach_rasa(
    tmp_path: Path, model_paths: dict[str, Path]
) -> None:
    pool = _pool()
    first = await pool.load("en", model_paths["en"])
    outside = tmp_path / "outside"
    outside.mkdir()
    for case in ("traversal", "absolute path", "symlink", "hard link", "char device", "fifo"):
        path = build(tmp_path / f"{case.replace(' ', '-')}.tar.gz", [hostile_members(outside)[case]],
                     base=model_paths["en"])  # fmt: skip
        # Even with the right sha256 recorded: a publisher may be compromised.
        with pytest.raises(ModelRejected, match="member"):
            await pool.load("en", path, sha256(path))
        assert pool.get("en").model is first, case
        assert list(outside.iterdir()) == [], case  # nothing was extracted anywhere
    assert await _greets_in_english(pool)
