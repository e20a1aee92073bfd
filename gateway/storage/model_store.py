"""The model store: where published model archives live (a local folder, or S3), each with its sha256.

Layout (both backends): per language, plain `*.tar.gz` archive names. The local store keeps
`<path>/<lang>/<name>` plus a `<name>.sha256` sidecar and, when signed, a `<name>.sig` sidecar; the S3 store
keeps the bucket `{project}-{lang}` (what the original pipeline uploads to) with the digest in the object's
`sha256` metadata and the signature in its `signature` metadata. The store keeps signatures (detached JSON
text, see gateway.agents.signing) but never judges them: gateways verify before loading.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from gateway.errors import ModelNotFound, ModelStoreError
from gateway.model_names import is_model_name, validate_model_name, validate_sha256
from gateway.settings import Settings

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".sha256"
SIGNATURE_SUFFIX = ".sig"
MAX_SIGNATURE_BYTES = 1024
CHUNK_BYTES = 1 << 20
_LANG_RE = re.compile(r"^[a-z]{2,3}$")
# Small files kept beside an archive (its test record, `<stem>.tests.json`); never listed as models.
_COMPANION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.tests\.json$")
MAX_COMPANION_BYTES = 1 << 20


def validate_companion_name(name: str) -> str:
    """`name` when it is a plain `*.tests.json` file name, else ModelStoreError."""
    if not _COMPANION_RE.match(name) or ".." in name:
        raise ModelStoreError(f"companion file name must be a plain *.tests.json name, got {name[:80]!r}")
    return name


def _validate_lang(lang: str) -> str:
    if not _LANG_RE.match(lang):
        raise ModelStoreError(f"invalid language {lang!r} for the model store")
    return lang


@dataclass(frozen=True)
class ModelRef:
    """A model by name, with the sha256 its publisher recorded when known."""

    model: str
    sha256: str | None = None

    def __post_init__(self) -> None:
        validate_model_name(self.model)
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", validate_sha256(self.sha256))

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"model": self.model, "sha256": self.sha256}


@dataclass(frozen=True)
class ModelInfo:
    """One stored archive."""

    lang: str
    name: str
    size: int
    sha256: str | None
    modified: float  # unix time of the upload
    signature: str | None = None  # the publisher's detached signature, verified by gateways

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.name, self.sha256)

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"model": self.name, "size": self.size, "sha256": self.sha256, "modified": self.modified}


@dataclass(frozen=True)
class Download:
    """What a download wrote: the sha256 of its bytes and the signature stored with them."""

    sha256: str
    signature: str | None = None


class ModelStore(Protocol):
    """Published model archives per language."""

    kind: str

    async def list_models(self, lang: str) -> list[ModelInfo]:
        """Every archive of `lang`, oldest name first (names start with a UTC timestamp)."""

    async def info(self, lang: str, name: str) -> ModelInfo:
        """One archive's metadata, or ModelNotFound."""

    async def put(
        self, lang: str, source: Path, name: str | None = None, signature: str | None = None
    ) -> ModelInfo:
        """Upload `source` (as `name`, default its file name) with its sha256 and signature (if any)."""

    async def download(self, lang: str, name: str, dest: Path) -> Download:
        """Write the archive to `dest`; the sha256 of the bytes written and the stored signature."""

    async def put_companion(self, lang: str, name: str, data: bytes) -> None:
        """Store a small file beside the archives (a `*.tests.json` test record)."""

    async def get_companion(self, lang: str, name: str) -> bytes | None:
        """A companion file's bytes, or None when there is none."""

    async def close(self) -> None:
        """Release connections."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file (blocking: run it in a thread for big files)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def copy_hashing(source: BinaryIO, dest: Path) -> str:
    """Copy a stream into `dest` atomically (temp file + rename) and return its sha256 (blocking)."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


class LocalModelStore:
    """A folder: `<root>/<lang>/<name>.tar.gz` with a `<name>.tar.gz.sha256` sidecar (sha256sum format)."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, lang: str, name: str) -> Path:
        try:
            validate_model_name(name)
        except ValueError as exc:
            raise ModelStoreError(str(exc)) from None
        return self.root / _validate_lang(lang) / name

    async def list_models(self, lang: str) -> list[ModelInfo]:
        """Every archive of `lang`, oldest name first."""
        folder = self.root / _validate_lang(lang)
        return await asyncio.to_thread(self._list_blocking, lang, folder)

    def _list_blocking(self, lang: str, folder: Path) -> list[ModelInfo]:
        if not folder.is_dir():
            return []
        names = sorted(p.name for p in folder.iterdir() if is_model_name(p.name) and p.is_file())
        return [self._info_blocking(lang, folder / name) for name in names]

    def _info_blocking(self, lang: str, path: Path) -> ModelInfo:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ModelNotFound(f"model {path.name} not found in {path.parent}") from None
        except OSError as exc:
            raise ModelStoreError(f"cannot read {path}: {exc.strerror}") from exc
        return ModelInfo(
            lang, path.name, stat.st_size, _read_sidecar(path), stat.st_mtime, _read_signature(path)
        )

    async def info(self, lang: str, name: str) -> ModelInfo:
        """One archive's metadata, or ModelNotFound."""
        return await asyncio.to_thread(self._info_blocking, lang, self._path(lang, name))

    async def put(
        self, lang: str, source: Path, name: str | None = None, signature: str | None = None
    ) -> ModelInfo:
        """Copy `source` in (atomically), then write its sha256 and signature sidecars."""
        target = self._path(lang, name or source.name)
        signature = checked_signature(signature) if signature is not None else None
        return await asyncio.to_thread(self._put_blocking, lang, source, target, signature)

    def _put_blocking(self, lang: str, source: Path, target: Path, signature: str | None) -> ModelInfo:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.resolve() == target.resolve():
                digest = sha256_file(source)  # already in place (e.g. trained into the store folder)
            else:
                with source.open("rb") as handle:
                    digest = copy_hashing(handle, target)
            sidecar = target.with_name(target.name + SIDECAR_SUFFIX)
            sidecar.write_text(f"{digest}  {target.name}\n", encoding="ascii")
            signed = target.with_name(target.name + SIGNATURE_SUFFIX)
            if signature is None:
                signed.unlink(missing_ok=True)  # a replaced archive must not keep the old one's signature
            else:
                self._put_companion_blocking(signed, (signature + "\n").encode("ascii"))
        except OSError as exc:
            raise ModelStoreError(f"cannot store {source} as {target}: {exc.strerror or exc}") from exc
        return self._info_blocking(lang, target)

    async def download(self, lang: str, name: str, dest: Path) -> Download:
        """Copy the archive to `dest`; returns the sha256 of the copied bytes and the signature sidecar."""
        return await asyncio.to_thread(self._download_blocking, self._path(lang, name), dest)

    def _download_blocking(self, path: Path, dest: Path) -> Download:
        try:
            with path.open("rb") as handle:
                digest = copy_hashing(handle, dest)
            return Download(digest, _read_signature(path))
        except FileNotFoundError:
            raise ModelNotFound(f"model {path.name} not found in {path.parent}") from None
        except OSError as exc:
            raise ModelStoreError(f"cannot copy {path} to {dest}: {exc.strerror or exc}") from exc

    async def put_companion(self, lang: str, name: str, data: bytes) -> None:
        """Write `<root>/<lang>/<name>` atomically."""
        target = self.root / _validate_lang(lang) / validate_companion_name(name)
        await asyncio.to_thread(self._put_companion_blocking, target, data)

    def _put_companion_blocking(self, target: Path, data: bytes) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, target)
        except OSError as exc:
            raise ModelStoreError(f"cannot write {target}: {exc.strerror or exc}") from exc

    async def get_companion(self, lang: str, name: str) -> bytes | None:
        """`<root>/<lang>/<name>`, or None."""
        path = self.root / _validate_lang(lang) / validate_companion_name(name)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ModelStoreError(f"cannot read {path}: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        """Nothing to release."""


def _read_sidecar(path: Path) -> str | None:
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    try:
        text = sidecar.read_text(encoding="ascii").split()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    except OSError as exc:
        logger.warning("cannot read %s: %s", sidecar, exc.strerror)
        return None
    try:
        return validate_sha256(text[0]) if text else None
    except ValueError:
        logger.warning("ignoring %s: not a sha256 digest", sidecar)
        return None


def _read_signature(path: Path) -> str | None:
    """The `<archive>.sig` sidecar's text (bounded), or None when unsigned."""
    sidecar = path.with_name(path.name + SIGNATURE_SUFFIX)
    try:
        with sidecar.open("rb") as handle:
            data = handle.read(MAX_SIGNATURE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelStoreError(f"cannot read {sidecar}: {exc.strerror or exc}") from exc
    # Oversized or non-ASCII text is passed on as is: the gateway's verification names the problem.
    return data.decode("ascii", errors="replace").strip() or None


def checked_signature(signature: str) -> str:
    """A signature text the stores can keep (one bounded line of ASCII: S3 metadata), or ModelStoreError."""
    text = signature.strip()
    if not text or len(text) > MAX_SIGNATURE_BYTES or not text.isascii() or not text.isprintable():
        raise ModelStoreError(
            f"a model signature must be one line of at most {MAX_SIGNATURE_BYTES} ASCII characters"
        )
    return text


def model_store_for(settings: Settings) -> ModelStore:
    """The configured store for this environment: the local folder (`models.path`) or S3 (`models.s3_*`)."""
    if settings.models.store == "s3":
        from gateway.storage.s3_model_store import S3ModelStore

        return S3ModelStore(settings)
    return LocalModelStore(settings.local_store_root)


def remove_quietly(path: Path) -> None:
    """Delete a file or folder left by a download; a leftover temp file is not worth failing for."""
    try:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        logger.warning("could not remove %s: %s", path, exc.strerror)
