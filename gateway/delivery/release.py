"""Releasing models from the command line: publish, list, activate, roll back and promote.

Each operation works on one environment's namespace (its model store bucket or folder, its Redis keys
and channels) and changes the active model the way the admin API does: the durable record first, then
the event (`gateway.storage.events.announce`), so a gateway that misses the message still finds it.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from gateway.agents.archive import recorded_signature
from gateway.agents.signing import SIGN_HINT, Signer, verifier_for
from gateway.delivery.records import (
    RECORD_SUFFIX,
    EvaluationRecord,
    read_record,
    record_path,
    require_passed,
    sha256_file,
)
from gateway.errors import ConfigError, DeliveryError, EventBusError, ModelNotFound, ModelStoreError
from gateway.model_names import MODEL_SUFFIX
from gateway.settings import Settings
from gateway.storage import redis_client
from gateway.storage.active_models import ActiveRecord, RedisActiveModels
from gateway.storage.events import RedisEventBus, announce
from gateway.storage.model_store import ModelInfo, ModelStore, model_store_for

logger = logging.getLogger(__name__)


def where(settings: Settings, lang: str) -> str:
    """Human-readable location of `lang`'s models in this environment's store."""
    if settings.models.store == "s3":
        endpoint = settings.models.s3_endpoint_url or "AWS S3"
        return f"s3://{settings.bucket_for(lang)}/ at {endpoint}"
    return str(settings.local_store_root / lang)


def companion_name(model: str) -> str:
    """The store name of a model's test record."""
    return model.removesuffix(MODEL_SUFFIX) + RECORD_SUFFIX


@dataclass
class Release:
    """One environment's model store, durable active models and event channel."""

    settings: Settings
    store: ModelStore
    active: RedisActiveModels
    bus: RedisEventBus

    async def list_models(self, lang: str) -> list[ModelInfo]:
        """The stored archives of `lang`; a store failure says where and what to check."""
        try:
            return await self.store.list_models(lang)
        except ModelStoreError as exc:
            raise ModelStoreError(f"{exc} ({_store_hint(self.settings)})") from exc

    async def find(self, lang: str, name: str) -> ModelInfo:
        """The stored archive `name`, or ModelNotFound listing what exists."""
        stored = await self.list_models(lang)
        for info in stored:
            if info.name == name:
                return info
        raise ModelNotFound(_not_found(self.settings, lang, name, stored))

    async def current(self, lang: str) -> ActiveRecord | None:
        """The durable active record of `lang`."""
        return await self.active.get(lang)

    async def publish(
        self,
        lang: str,
        model: Path,
        record: EvaluationRecord | None,
        *,
        force: bool = False,
        signer: Signer | None = None,
    ) -> ModelInfo:
        """Upload `model`, its test record and signature (by `signer`, else `<model>.sig`); activate it."""
        digest = sha256_file(model)
        if not force:
            record = require_passed(model, digest)
        signature = self.signature(lang, model.name, digest, recorded_signature(model), signer)
        info = await self.upload(lang, model, digest, record, signature)
        await self.activate(lang, info)
        return info

    def signature(
        self, lang: str, name: str, digest: str, carried: str | None, signer: Signer | None
    ) -> str | None:
        """The signature to store with an archive: a new one by `signer`, else the one it `carried`.

        When this environment's gateways require signatures (models.verify_key_file, models.hmac_key), an
        unsigned archive is refused here, and the signature is checked with their keys, so a model they
        would refuse is never made active.
        """
        signature = signer.sign(lang, digest) if signer is not None else carried
        verifier = verifier_for(self.settings.models)
        if verifier.required:
            if signature is None:
                raise DeliveryError(
                    f"model {name} is unsigned, but {self.settings.environment} gateways accept only models "
                    f"signed with {verifier.trusted()}: {SIGN_HINT}"
                )
            verifier.verify(name, lang, digest, signature)
        return signature

    async def upload(
        self,
        lang: str,
        model: Path,
        digest: str,
        record: EvaluationRecord | None,
        signature: str | None = None,
    ) -> ModelInfo:
        """Put the archive, its signature and its record into the store; checks the stored sha256."""
        try:
            if record is not None:
                await self.store.put_companion(lang, companion_name(model.name), record.to_json().encode())
            info = await self.store.put(lang, model, signature=signature)
        except ModelStoreError as exc:
            raise ModelStoreError(f"{exc} ({_store_hint(self.settings)})") from exc
        if info.sha256 != digest:
            raise ModelStoreError(
                f"the store recorded sha256 {info.sha256} for {info.name}, not {digest}: upload it again"
            )
        logger.info("uploaded %s (%s bytes) to %s", info.name, info.size, where(self.settings, lang))
        return info

    async def activate(self, lang: str, info: ModelInfo) -> ActiveRecord:
        """Record `info` as the active model and announce it on the environment's channel."""
        return await announce(self.bus, self.active, lang, info.ref)

    async def rollback(self, lang: str) -> ActiveRecord:
        """Go back to the model active before the current one and announce it."""
        record = await self.active.get(lang)
        if record is None:
            raise DeliveryError(f"nothing to roll back to: no {lang} model was ever activated here")
        if not record.history:
            raise DeliveryError(
                f"nothing to roll back to: {record.current.model} is the oldest active {lang} model"
            )
        rolled = await self.active.rollback(lang, record.current)
        await self.bus.publish(lang, rolled.current)
        return rolled

    async def fetch(
        self, lang: str, name: str, folder: Path
    ) -> tuple[Path, EvaluationRecord | None, str | None]:
        """Download archive `name`, its test record and signature (if any) into `folder/<lang>/`.

        Checks the sha256 the store recorded.
        """
        info = await self.find(lang, name)
        dest = folder / lang / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        fetched = await self.store.download(lang, name, dest)
        digest = fetched.sha256
        if info.sha256 is not None and digest != info.sha256:
            raise ModelStoreError(f"{name} downloaded with sha256 {digest}, the store recorded {info.sha256}")
        data = await self.store.get_companion(lang, companion_name(name))
        if data is not None:
            record_path(dest).write_bytes(data)
        return dest, read_record(dest), fetched.signature


@contextlib.asynccontextmanager
async def release(settings: Settings) -> AsyncIterator[Release]:
    """The environment's store and Redis, checked reachable; closed on exit."""
    url = settings.redis.url
    if url is None:
        raise ConfigError(
            "releasing needs Redis (redis.url, GATEWAY_REDIS_URL): gateways learn their active model "
            "from it; without it each gateway loads the newest model it finds at start-up"
        )
    client = redis_client.make_client(url, settings.redis.socket_timeout_seconds, settings.redis.cluster)
    store = model_store_for(settings)
    try:
        await _ping(client, url)
        active = RedisActiveModels(client, settings)
        bus = RedisEventBus(client, settings, active, settings.bots)
        yield Release(settings, store, active, bus)
    finally:
        await store.close()
        await redis_client.close_client(client)


async def _ping(client: redis_client.RedisClient, url: str) -> None:
    try:
        await client.ping()
    except redis_client.REDIS_ERRORS as exc:
        raise EventBusError(
            f"Redis at {redis_client._redacted(url)} is unreachable ({exc}): check redis.url "
            "(GATEWAY_REDIS_URL) and that the server is up"
        ) from exc


def _store_hint(settings: Settings) -> str:
    if settings.models.store == "s3":
        return (
            f"model store: {where(settings, '{lang}')}; check models.s3_endpoint_url "
            "(GATEWAY_MODELS_S3_ENDPOINT_URL), the credentials and that the endpoint is up"
        )
    return f"model store: folder {settings.local_store_root}; check models.path and its permissions"


def _not_found(settings: Settings, lang: str, name: str, stored: list[ModelInfo]) -> str:
    listed = ", ".join(info.name for info in stored) if stored else "none yet (run `gateway publish`)"
    return f"model {name} not found in {where(settings, lang)} ({settings.environment}); stored: {listed}"


async def promote(
    source: Settings, target: Settings, lang: str, *, force: bool = False, signer: Signer | None = None
) -> ModelInfo:
    """Copy `source`'s active `lang` model (bytes, sha256, test record, signature) to `target`; activate it.

    The signature travels with the bytes; with `signer` the copy is signed anew (after the carried
    signature is checked, when this host has verification keys: re-signing must not launder a tampered
    staging archive).
    """
    async with release(source) as src, release(target) as dst:
        record = await src.current(lang)
        if record is None:
            raise DeliveryError(
                f"no active {lang} model in {source.environment}: "
                f"run `gateway --env {source.environment} publish {lang}` first"
            )
        with tempfile.TemporaryDirectory(prefix="gateway-promote-") as tmp:
            path, tests, carried = await src.fetch(lang, record.current.model, Path(tmp))
            digest = sha256_file(path)
            if not force:
                tests = require_passed(path, digest)
            verifier = verifier_for(source.models)
            if signer is not None and carried is not None and verifier.required:
                verifier.verify(path.name, lang, digest, carried)
            signature = dst.signature(lang, path.name, digest, carried, signer)
            info = await dst.upload(lang, path, digest, tests, signature)
        await dst.activate(lang, info)
        return info
