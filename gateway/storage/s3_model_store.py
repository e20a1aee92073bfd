"""The S3 (AWS, MinIO) model store via aiobotocore: bucket `{project}-{lang}`; sha256, signature: metadata."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway.errors import ModelNotFound, ModelStoreError
from gateway.model_names import validate_model_name, validate_sha256
from gateway.settings import Settings
from gateway.storage.model_store import (
    CHUNK_BYTES,
    MAX_COMPANION_BYTES,
    Download,
    ModelInfo,
    checked_signature,
    sha256_file,
    validate_companion_name,
)

logger = logging.getLogger(__name__)

SHA_METADATA = "sha256"  # S3 lower-cases user metadata keys; x-amz-meta-sha256 on the wire
SIGNATURE_METADATA = "signature"  # x-amz-meta-signature: the detached signature JSON
_NOT_FOUND = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}
_HEAD_CONCURRENCY = 8
# Everything that means "the endpoint failed" rather than "the object is missing".
_TRANSPORT_ERRORS = (BotoCoreError, aiohttp.ClientError, OSError, asyncio.TimeoutError)


class S3ModelStore:
    """Archives as objects `<name>` in bucket `settings.bucket_for(lang)`."""

    kind = "s3"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._opening = asyncio.Lock()

    async def _s3(self) -> Any:
        """The client, created on first use so a store that is never used costs nothing."""
        if self._client is None:
            async with self._opening:
                if self._client is None:
                    m = self.settings.models
                    config = Config(
                        connect_timeout=5,
                        read_timeout=60,
                        retries={"max_attempts": 3, "mode": "standard"},
                        signature_version="s3v4",
                    )
                    self._client = await self._stack.enter_async_context(
                        get_session().create_client(
                            "s3",
                            endpoint_url=m.s3_endpoint_url,
                            region_name=m.s3_region,
                            aws_access_key_id=m.s3_access_key_id,
                            aws_secret_access_key=m.s3_secret_access_key,
                            config=config,
                        )
                    )
        return self._client

    def _where(self, lang: str, name: str = "") -> str:
        return f"s3://{self.settings.bucket_for(lang)}/{name}"

    def _error(self, exc: BaseException, lang: str, name: str, action: str) -> ModelStoreError:
        """Translate a botocore/aiohttp error into ModelNotFound or ModelStoreError."""
        where = self._where(lang, name)
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                return ModelNotFound(f"model {name or '(bucket)'} not found at {where}")
            return ModelStoreError(f"S3 refused to {action} {where}: {code or exc}")
        return ModelStoreError(f"S3 endpoint failed to {action} {where}: {type(exc).__name__}: {exc}")

    async def list_models(self, lang: str) -> list[ModelInfo]:
        """Every `*.tar.gz` in the language's bucket, oldest name first (empty when no bucket yet)."""
        s3 = await self._s3()
        bucket = self.settings.bucket_for(lang)
        names: list[str] = []
        try:
            async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    with contextlib.suppress(ValueError):
                        names.append(validate_model_name(obj["Key"]))
        except ClientError as exc:
            error = self._error(exc, lang, "", "list")
            if isinstance(error, ModelNotFound):
                logger.info("bucket %s does not exist yet: no %s models", bucket, lang)
                return []
            raise error from exc
        except _TRANSPORT_ERRORS as exc:
            raise self._error(exc, lang, "", "list") from exc
        limit = asyncio.Semaphore(_HEAD_CONCURRENCY)

        async def head(name: str) -> ModelInfo | None:
            async with limit:
                try:
                    return await self.info(lang, name)
                except ModelNotFound:  # deleted between list and head
                    return None

        found = await asyncio.gather(*(head(name) for name in sorted(names)))
        return [info for info in found if info is not None]

    async def info(self, lang: str, name: str) -> ModelInfo:
        """HEAD the object: size, upload time and the sha256 metadata."""
        name = _checked(name)
        s3 = await self._s3()
        try:
            head = await s3.head_object(Bucket=self.settings.bucket_for(lang), Key=name)
        except (ClientError, *_TRANSPORT_ERRORS) as exc:
            raise self._error(exc, lang, name, "read") from exc
        metadata = {str(k).lower(): v for k, v in (head.get("Metadata") or {}).items()}
        published = metadata.get(SHA_METADATA)
        try:
            sha = validate_sha256(published) if published is not None else None
        except ValueError:
            logger.warning(
                "%s carries an invalid sha256 metadata value; ignoring it", self._where(lang, name)
            )
            sha = None
        modified = head.get("LastModified")
        return ModelInfo(
            lang,
            name,
            int(head.get("ContentLength", 0)),
            sha,
            modified.timestamp() if modified else 0.0,
            metadata.get(SIGNATURE_METADATA),
        )

    async def put(
        self, lang: str, source: Path, name: str | None = None, signature: str | None = None
    ) -> ModelInfo:
        """Upload with `x-amz-meta-sha256` (and `x-amz-meta-signature`); creates the bucket when missing."""
        name = _checked(name or source.name)
        metadata = {SHA_METADATA: ""}
        if signature is not None:
            metadata[SIGNATURE_METADATA] = checked_signature(signature)
        s3 = await self._s3()
        bucket = self.settings.bucket_for(lang)
        try:
            digest = await asyncio.to_thread(sha256_file, source)
            body = await asyncio.to_thread(source.read_bytes)
        except OSError as exc:
            raise ModelStoreError(f"cannot read {source}: {exc.strerror or exc}") from exc
        try:
            await self._ensure_bucket(s3, bucket)
            metadata[SHA_METADATA] = digest
            await s3.put_object(Bucket=bucket, Key=name, Body=body, Metadata=metadata)
        except (ClientError, *_TRANSPORT_ERRORS) as exc:
            raise self._error(exc, lang, name, "upload") from exc
        return await self.info(lang, name)

    async def put_companion(self, lang: str, name: str, data: bytes) -> None:
        """Upload a small object beside the archives (list_models ignores it)."""
        name = validate_companion_name(name)
        s3 = await self._s3()
        bucket = self.settings.bucket_for(lang)
        try:
            await self._ensure_bucket(s3, bucket)
            await s3.put_object(Bucket=bucket, Key=name, Body=data)
        except (ClientError, *_TRANSPORT_ERRORS) as exc:
            raise self._error(exc, lang, name, "upload") from exc

    async def get_companion(self, lang: str, name: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        name = validate_companion_name(name)
        s3 = await self._s3()
        try:
            response = await s3.get_object(Bucket=self.settings.bucket_for(lang), Key=name)
            body = response["Body"]
            async with body:  # read through the wrapper (as download does), not the aiohttp response
                data = b""
                while len(data) <= MAX_COMPANION_BYTES and (chunk := await body.read(CHUNK_BYTES)):
                    data += chunk
        except (ClientError, *_TRANSPORT_ERRORS) as exc:
            error = self._error(exc, lang, name, "download")
            if isinstance(error, ModelNotFound):
                return None
            raise error from exc
        if len(data) > MAX_COMPANION_BYTES:
            raise ModelStoreError(f"{self._where(lang, name)} is larger than {MAX_COMPANION_BYTES} bytes")
        return data

    async def _ensure_bucket(self, s3: Any, bucket: str) -> None:
        try:
            await s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) not in _NOT_FOUND:
                raise
            params: dict[str, Any] = {"Bucket": bucket}
            if self.settings.models.s3_region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.models.s3_region}
            logger.info("creating bucket %s", bucket)
            try:
                await s3.create_bucket(**params)
            except ClientError as again:  # another publisher created it first
                code = again.response.get("Error", {}).get("Code", "")
                if code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    async def download(self, lang: str, name: str, dest: Path) -> Download:
        """Stream the object into `dest` (temp file + rename), hashing on the way; with its signature."""
        name = _checked(name)
        s3 = await self._s3()
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        done = False
        try:
            with os.fdopen(fd, "wb") as out:
                response = await s3.get_object(Bucket=self.settings.bucket_for(lang), Key=name)
                # The signature of these very bytes: read with them, not by a separate HEAD.
                metadata = {str(k).lower(): v for k, v in (response.get("Metadata") or {}).items()}
                body = response["Body"]
                async with body:  # releases the connection; read through the wrapper (length check)
                    while chunk := await body.read(CHUNK_BYTES):
                        digest.update(chunk)
                        out.write(chunk)
            os.replace(tmp, dest)
            done = True
        except (ClientError, *_TRANSPORT_ERRORS) as exc:
            raise self._error(exc, lang, name, "download") from exc
        finally:
            if not done:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return Download(digest.hexdigest(), metadata.get(SIGNATURE_METADATA))

    async def close(self) -> None:
        """Close the client and its connection pool."""
        self._client = None
        await self._stack.aclose()


def _checked(name: str) -> str:
    try:
        return validate_model_name(name)
    except ValueError as exc:
        raise ModelStoreError(str(exc)) from None
