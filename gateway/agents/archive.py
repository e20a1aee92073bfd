"""Trusting a model archive before Rasa opens it: publisher's sha256, optional HMAC, safe members only.

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

from gateway.errors import ModelError, ModelRejected
from gateway.model_names import show, validate_sha256

logger = logging.getLogger(__name__)

SIGNATURE_SUFFIX = ".sig"
MAX_MEMBERS = 20_000
MAX_UNPACKED_BYTES = 8 * 1024**3
_CHUNK = 1 << 20
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


def archive_digests(path: Path, hmac_key: str | None = None) -> tuple[str, str | None]:
    """sha256 of the file and, with `hmac_key`, its HMAC-SHA256 (both hex), in one read."""
    digest = hashlib.sha256()
    mac = hmac.new(hmac_key.encode(), digestmod=hashlib.sha256) if hmac_key else None
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                if mac is not None:
                    mac.update(chunk)
    except OSError as exc:
        raise ModelError(f"cannot read model archive {path.name}: {exc.strerror}") from None
    return digest.hexdigest(), mac.hexdigest() if mac is not None else None


def sign_archive(path: Path, hmac_key: str) -> str:
    """The signature a publisher records for `path`: hex HMAC-SHA256 of its bytes with the shared key."""
    signature = archive_digests(path, hmac_key)[1]
    assert signature is not None
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
        return sidecar.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        raise ModelRejected(f"signature file {sidecar.name} is unreadable") from None


def verify_archive(
    path: Path, expected_sha256: str | None, hmac_key: str | None, signature: str | None
) -> str:
    """Check `path` before it is loaded; return its sha256 (hex) or raise ModelRejected.

    - expected_sha256: what the publisher recorded (store metadata or the event); when given, the
      file must match it. None only for archives with no record (e.g. trained on this host).
    - hmac_key: the shared `models.hmac_key`; when set, `signature` (hex HMAC-SHA256 of the file,
      see `sign_archive`) is required and must match. A None signature falls back to
      `<archive>.sig` next to the file.
    - Then every member header is checked (see `check_members`) without extracting anything.
    Blocking (reads the whole file): call it from a worker thread.
    """
    expected = validate_sha256(expected_sha256) if expected_sha256 is not None else None
    if not path.is_file():
        raise ModelError(f"model archive {path.name} does not exist")
    sha256, mac = archive_digests(path, hmac_key)
    if expected is not None and not hmac.compare_digest(sha256, expected):
        raise ModelRejected(
            f"model {path.name}: sha256 {sha256[:12]}... does not match the recorded {expected[:12]}..."
        )
    if hmac_key:
        presented = signature if signature is not None else recorded_signature(path)
        if presented is None:
            raise ModelRejected(f"model {path.name} is unsigned but models.hmac_key requires a signature")
        assert mac is not None
        if not hmac.compare_digest(presented.strip().lower().encode(), mac.encode()):
            raise ModelRejected(f"model {path.name}: HMAC signature does not match")
    check_members(path)
    return sha256
