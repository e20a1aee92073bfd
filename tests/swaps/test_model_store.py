"""One contract for every model store: the local folder and S3 (moto's server over real HTTP)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import pytest

from gateway.errors import ModelNotFound, ModelStoreError
from gateway.model_names import validate_model_name
from gateway.settings import load_settings
from gateway.storage.model_store import Download, LocalModelStore, ModelStore, model_store_for
from tests.support import S3Server, free_port


def archive(folder: Path, name: str, size: int = 300_000) -> tuple[Path, str]:
    """A file standing in for a model archive (the store does not look inside) and its sha256."""
    path = folder / name
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Partial downloads left behind."""
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ModelStore]:
    project = f"t{uuid.uuid4().hex[:12]}"  # fresh buckets per test on the shared moto server
    overrides = {"project": project, "models.path": str(tmp_path / "store")}
    if request.param == "s3":
        overrides.update(request.getfixturevalue("s3_server").overrides())
    made = model_store_for(load_settings(overrides=overrides))
    assert made.kind == request.param
    try:
        yield made
    finally:
        await made.close()


async def test_put_records_the_sha256_and_lists_oldest_first(store: ModelStore, tmp_path: Path) -> None:
    newer, newer_sha = archive(tmp_path, "20260102T000000Z-bbbbbbbbbbbb.tar.gz")
    older, older_sha = archive(tmp_path, "20260101T000000Z-aaaaaaaaaaaa.tar.gz", 1000)
    put = await store.put("en", newer)
    await store.put("en", older)
    assert (put.name, put.sha256, put.size) == (newer.name, newer_sha, 300_000)
    listed = await store.list_models("en")
    assert [(i.name, i.sha256, i.size) for i in listed] == [
        (older.name, older_sha, 1000),
        (newer.name, newer_sha, 300_000),
    ]
    assert await store.list_models("pl") == []
    info = await store.info("en", newer.name)
    assert (info.sha256, info.lang, info.ref.model) == (newer_sha, "en", newer.name)


async def test_download_writes_the_same_bytes_and_returns_their_sha256(
    store: ModelStore, tmp_path: Path
) -> None:
    source, sha = archive(tmp_path, "20260101T000000Z-cccccccccccc.tar.gz", 3_500_000)  # several chunks
    await store.put("de", source, name="renamed.tar.gz")
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "copy.tar.gz"
    assert await store.download("de", "renamed.tar.gz", dest) == Download(sha, None)
    assert dest.read_bytes() == source.read_bytes()
    assert [p.name for p in out.iterdir()] == ["copy.tar.gz"]  # no temp leftovers


SIGNATURE = '{"v":1,"alg":"ed25519","key_id":"0123456789abcdef","sig":"c2lnbmF0dXJlK2J5dGVzLz0="}'


async def test_the_signature_is_kept_with_the_archive_and_returned_by_download(
    store: ModelStore, tmp_path: Path
) -> None:
    source, sha = archive(tmp_path, "20260101T000000Z-dddddddddddd.tar.gz", 10)
    put = await store.put("en", source, signature=SIGNATURE)
    assert put.signature == SIGNATURE
    assert (await store.info("en", source.name)).signature == SIGNATURE
    assert [i.signature for i in await store.list_models("en")] == [SIGNATURE]
    out = tmp_path / "out"
    out.mkdir()
    assert await store.download("en", source.name, out / source.name) == Download(sha, SIGNATURE)
    assert [p.name for p in out.iterdir()] == [source.name]  # the signature travels in the return value
    # Replacing the archive replaces its signature: an unsigned upload leaves no stale one behind.
    again, again_sha = archive(tmp_path, source.name, 20)
    assert (await store.put("en", again)).signature is None
    assert await store.download("en", source.name, out / "again.tar.gz") == Download(again_sha, None)


@pytest.mark.parametrize("bad", ["", "x" * 1025, "two\nlines", "non-ascii é"])
async def test_signatures_the_stores_cannot_keep_are_refused_before_the_upload(
    store: ModelStore, tmp_path: Path, bad: str
) -> None:
    source, _ = archive(tmp_path, "m.tar.gz", 10)
    with pytest.raises(ModelStoreError, match="signature must be one line"):
        await store.put("en", source, signature=bad)
    with pytest.raises(ModelNotFound):
        await store.info("en", "m.tar.gz")


async def test_put_of_the_same_name_replaces_the_archive_and_its_sha256(
    store: ModelStore, tmp_path: Path
) -> None:
    first, _ = archive(tmp_path, "m.tar.gz", 10)
    await store.put("en", first)
    second, second_sha = archive(tmp_path, "m.tar.gz", 20)
    assert (await store.put("en", second)).sha256 == second_sha
    assert [(i.name, i.sha256) for i in await store.list_models("en")] == [("m.tar.gz", second_sha)]


async def test_missing_models_raise_model_not_found(store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        await store.info("en", "nope.tar.gz")
    with pytest.raises(ModelNotFound):
        await store.download("en", "nope.tar.gz", tmp_path / "x.tar.gz")
    assert not (tmp_path / "x.tar.gz").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "name",
    ["../escape.tar.gz", "a/b.tar.gz", "/etc/passwd.tar.gz", "model.zip", ".hidden.tar.gz", "..tar.gz"],
)
async def test_names_that_are_not_plain_archive_names_are_refused(
    store: ModelStore, tmp_path: Path, name: str
) -> None:
    source, _ = archive(tmp_path, "ok.tar.gz", 10)
    with pytest.raises(ModelStoreError):
        await store.info("en", name)
    with pytest.raises(ModelStoreError):
        await store.put("en", source, name=name)
    with pytest.raises(ModelStoreError):
        await store.download("en", name, tmp_path / "x.tar.gz")
    with pytest.raises(ValueError):
        validate_model_name(name)


async def test_archives_published_without_a_sha256_are_listed_without_one(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """What the original pipeline uploaded (no metadata, no sidecar) is still usable."""
    local = LocalModelStore(tmp_path)
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "legacy.tar.gz").write_bytes(b"x" * 5)
    assert [(i.name, i.sha256) for i in await local.list_models("en")] == [("legacy.tar.gz", None)]

    s3: S3Server = request.getfixturevalue("s3_server")
    project = f"t{uuid.uuid4().hex[:12]}"
    raw = boto3.client(
        "s3", endpoint_url=s3.url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    raw.create_bucket(Bucket=f"{project}-en")
    raw.put_object(Bucket=f"{project}-en", Key="legacy.tar.gz", Body=b"x" * 5)
    raw.put_object(Bucket=f"{project}-en", Key="notes.txt", Body=b"not a model")
    remote = model_store_for(load_settings(overrides={"project": project, **s3.overrides()}))
    try:
        assert [(i.name, i.sha256, i.size) for i in await remote.list_models("en")] == [
            ("legacy.tar.gz", None, 5)
        ]
    finally:
        await remote.close()


async def test_an_unreachable_s3_endpoint_is_a_store_error_not_a_missing_model(tmp_path: Path) -> None:
    overrides = {
        "models.store": "s3",
        "models.s3_endpoint_url": f"http://127.0.0.1:{free_port()}",
        "models.s3_access_key_id": "testing",
        "models.s3_secret_access_key": "testing",
    }
    remote = model_store_for(load_settings(overrides=overrides))
    try:
        for call in (remote.list_models("en"), remote.info("en", "m.tar.gz")):
            with pytest.raises(ModelStoreError) as caught:
                await call
            assert not isinstance(caught.value, ModelNotFound)
            assert "S3 endpoint failed" in str(caught.value)
    finally:
        await remote.close()


async def test_local_store_keeps_a_sha256sum_sidecar(tmp_path: Path) -> None:
    source, sha = archive(tmp_path, "m.tar.gz", 10)
    local = LocalModelStore(tmp_path / "store")
    await local.put("pl", source)
    sidecar = tmp_path / "store" / "pl" / "m.tar.gz.sha256"
    assert sidecar.read_text() == f"{sha}  m.tar.gz\n"
    await local.put("pl", source, signature=SIGNATURE)
    assert (tmp_path / "store" / "pl" / "m.tar.gz.sig").read_text() == SIGNATURE + "\n"
    assert [i.name for i in await local.list_models("pl")] == ["m.tar.gz"]  # sidecars are not models
