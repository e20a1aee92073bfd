"""Trusting a model archive before Rasa opens it: publisher's sha256, signature, safe members only.

Rasa model archives hold pickled objects and Rasa extracts them with `tarfile.extractall`, so an
untrusted archive is code execution and a crafted one writes outside its folder. Everything here
runs before the archive reaches Rasa, reads the archive without extracting anything, and raises
ModelRejected (a ModelError) naming the archive and the problem.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import tarfile
import zlib
from pathlib import Path

from gateway.agents.signing import MAX_SIGNATURE_CHARS, Signer, Verifier
from gateway.errors import ModelError, ModelRejected
from gateway.model_names import show, validate_sha256
from gateway.storage.model_store import SIGNATURE_SUFFIX

logger = logging.getLogger(__name__)

MAX_MEMBERS = 20_000
MAX_UNPACKED_BYTES = 8 * 1024**3
_CHUNK = 1 << 20
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


def archive_sha256(path: Path) -> str:
    """Hex sha256 of the file (blocking: call it from a worker thread)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise ModelError(f"cannot read model archive {path.name}: {exc.strerror}") from None
    return digest.hexdigest()


def sign_archive(path: Path, lang: str, signer: Signer) -> str:
    """Sign `path` as a model of `lang` and write the signature beside it (`<archive>.sig`); returns it."""
    signature = signer.sign(lang, archive_sha256(path))
    sidecar = path.with_name(path.name + SIGNATURE_SUFFIX)
    try:
        sidecar.write_text(signature + "\n", encoding="ascii")
    except OSError as exc:
        raise ModelError(f"cannot write signature file {sidecar}: {exc.strerror or exc}") from None
    return signature


def check_members(path: Path) -> int:
    """Number of members, after checking each one's header (nothing is extracted); else ModelRejected.

    Only regular files and directories with relative names inside the archive are allowed: no
    absolute paths, no `..`, no symbolic or hard links, no devices or FIFOs, no setuid/setgid bits.
    """
    count = 0
    unpacked = 0
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for member in tar:
                count += 1
                if count > MAX_MEMBERS:
                    raise ModelRejected(f"model {path.name}: more than {MAX_MEMBERS} members")
                _check_member(path.name, member)
                unpacked += member.size
                if unpacked > MAX_UNPACKED_BYTES:
                    raise ModelRejected(f"model {path.name}: unpacks to more than {MAX_UNPACKED_BYTES} bytes")
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ModelRejected(
            f"model {path.name} is not a valid .tar.gz archive ({type(exc).__name__})"
        ) from None
    except OSError as exc:  # gzip.BadGzipFile is an OSError
        raise ModelRejected(
            f"model {path.name} is not a valid .tar.gz archive ({exc.strerror or exc})"
        ) from None
    if count == 0:
        raise ModelRejected(f"model {path.name} is an empty archive")
    return count


def _check_member(archive: str, member: tarfile.TarInfo) -> None:
    name = member.name
    where = f"model {archive}: member {show(name)}"
    if "\x00" in name:
        raise ModelRejected(f"{where} has a NUL byte in its name")
    if name.startswith(("/", "\\")) or _DRIVE_RE.match(name):
        raise ModelRejected(f"{where} has an absolute path")
    if ".." in re.split(r"[/\\]", name):
        raise ModelRejected(f"{where} climbs out of the archive ('..')")
    if member.issym() or member.islnk():
        raise ModelRejected(f"{where} is a link")
    if member.ischr() or member.isblk() or member.isfifo():
        raise ModelRejected(f"{where} is a device or FIFO")
    if not (member.isfile() or member.isdir()):
        raise ModelRejected(f"{where} is not a regular file or folder")
    if member.mode & 0o6000:
        raise ModelRejected(f"{where} has setuid/setgid bits")


def recorded_signature(path: Path) -> str | None:
    """The signature stored next to a local archive (`<archive>.sig`), if any."""
    sidecar = path.with_name(path.name + SIGNATURE_SUFFIX)
    try:
        with sidecar.open("rb") as fh:
            data = fh.read(MAX_SIGNATURE_CHARS + 1)
        return data.decode("ascii").strip() or None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        raise ModelRejected(f"signature file {sidecar.name} is unreadable") from None


def verify_archive(
    path: Path,
    expected_sha256: str | None,
    verifier: Verifier | None = None,
    signature: str | None = None,
    lang: str = "",
) -> str:
    """Check `path` before it is loaded as a model of `lang`; return its sha256 (hex) or raise ModelRejected.

    - expected_sha256: what the publisher recorded (store metadata or the event); when given, the
      file must match it. None only for archives with no record (e.g. trained on this host).
    - verifier: the keys this gateway trusts (see gateway.agents.signing); when it has any, `signature`
      (from the store) must be valid for this archive and language. A None signature falls back to
      `<archive>.sig` next to the file.
    - Then every member header is checked (see `check_members`) without extracting anything.
    Blocking (reads the whole file): call it from a worker thread.
    """
    expected = validate_sha256(expected_sha256) if expected_sha256 is not None else None
    if not path.is_file():
        raise ModelError(f"model archive {path.name} does not exist")
    sha256 = archive_sha256(path)
    if expected is not None and not hmac.compare_digest(sha256, expected):
        raise ModelRejected(
            f"model {path.name}: sha256 {sha256[:12]}... does not match the recorded {expected[:12]}..."
        )
    if verifier is not None and verifier.required:
        if not lang:
            raise ModelError(f"model {path.name}: no language to verify its signature for")
        presented = signature if signature is not None else recorded_signature(path)
        signed_by = verifier.verify(path.name, lang, sha256, presented)
        logger.info("model %s: signature by %s verified", path.name, signed_by)
    check_members(path)
    return sha256
