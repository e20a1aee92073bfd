"""Hot model swaps: fetch, verify, load off the loop, warm, swap in one step; never leave a language dark.

One worker per language drains a one-slot mailbox, so a burst of events coalesces (the latest wins) and at
most one load per language runs at a time. Any failure keeps the answering model, is logged, counted in
`gateway_model_swaps_total{result}` and recorded as the bot's `last_error` (shown by /readyz and /bots).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import tempfile
import time
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import NoReturn

from gateway import metrics
from gateway.agents.loader import LoadedModel
from gateway.agents.pool import AgentPool
from gateway.errors import (
    EventBusError,
    GatewayError,
    ModelError,
    ModelProbeFailed,
    ModelRefusedBefore,
    ModelRejected,
    ModelSignatureInvalid,
    StorageError,
)
from gateway.storage.active_models import ActiveModels
from gateway.storage.model_store import Download, ModelRef, ModelStore, remove_quietly, sha256_file

logger = logging.getLogger(__name__)


class SwapResult(str, enum.Enum):
    """The `result` label of gateway_model_swaps_total."""

    SUCCESS = "success"
    DOWNLOAD_FAILED = "download_failed"
    REJECTED = "rejected"
    LOAD_FAILED = "load_failed"
    PROBE_FAILED = "probe_failed"


class Swapper:
    """Swaps models from `store` into `pool`: at most one load per language at a time, latest wins."""

    def __init__(self, pool: AgentPool, store: ModelStore, workdir: Path | None = None) -> None:
        self.pool = pool
        self.store = store
        self.workdir = workdir
        self._locks = {lang: asyncio.Lock() for lang in pool.bots}
        self._pending: dict[str, ModelRef] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        # Archives (lang, name, sha256, signature) that failed to load or warm: the same bytes fail the same
        # way, so replays of them (reconciling every minute) cost a HEAD request, not a download and a load.
        # The signature is part of the key: signing a refused unsigned archive makes it worth a new try.
        self._refused: dict[tuple[str, str, str, str], str] = {}

    def request(self, lang: str, ref: ModelRef) -> None:
        """Ask for `ref` to answer `lang` soon; replaces any request for `lang` not started yet."""
        if lang not in self._locks:
            logger.warning("ignoring model %s for unconfigured language %r", ref.model, lang)
            return
        self._pending[lang] = ref
        worker = self._workers.get(lang)
        if worker is None or worker.done():
            self._workers[lang] = asyncio.create_task(self._drain(lang), name=f"swap-{lang}")

    def loading(self, lang: str) -> bool:
        """Whether a swap of `lang` is running right now."""
        return self._locks[lang].locked()

    def busy(self, lang: str) -> bool:
        """Whether a swap of `lang` is running or waiting."""
        worker = self._workers.get(lang)
        return self._locks[lang].locked() or lang in self._pending or bool(worker and not worker.done())

    async def idle(self) -> None:
        """Wait until every requested swap has finished (tests, admin, shutdown)."""
        while running := [task for task in self._workers.values() if not task.done()]:
            await asyncio.gather(*running, return_exceptions=True)

    async def close(self) -> None:
        """Cancel pending and running swaps; the answering models stay."""
        self._pending.clear()
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def _drain(self, lang: str) -> None:
        while (ref := self._pending.pop(lang, None)) is not None:
            # Failures are logged, counted and recorded on the bot by swap().
            with contextlib.suppress(GatewayError, OSError):
                await self.swap(lang, ref)

    async def swap(self, lang: str, ref: ModelRef) -> LoadedModel:
        """Make `ref` answer `lang` now (waits for any running swap of `lang`); raises on failure."""
        bot = self.pool.get(lang)
        async with self._locks[lang]:
            current = bot.model
            if current is not None and current.name == ref.model and ref.sha256 in (None, current.sha256):
                return current  # already answering (a replayed or duplicate event)
            started = time.perf_counter()
            self.pool.progress.begin(lang, ref.model)  # downloading counts as loading
            folder = Path(tempfile.mkdtemp(prefix=f"gateway-swap-{lang}-", dir=self.workdir))
            try:
                path, fetched = await self._fetch(lang, ref, folder)
                model = await self._load(lang, path, fetched.sha256, fetched.signature)
            except (GatewayError, OSError) as exc:  # e.g. refused before: the page must not wait for ever
                self.pool.progress.finish(lang, ref.model, str(exc))
                raise
            finally:
                await asyncio.to_thread(remove_quietly, folder)
            logger.info(
                "bot %s: now answering with %s (swap took %.2fs)",
                lang,
                ref.model,
                time.perf_counter() - started,
            )
            return model

    async def _fetch(self, lang: str, ref: ModelRef, folder: Path) -> tuple[Path, Download]:
        """Download `ref` into `folder` (with its signature) and check it against the recorded sha256."""
        try:
            info = await self.store.info(lang, ref.model)
            if ref.sha256 and info.sha256 and ref.sha256 != info.sha256:
                raise ModelRejected(
                    f"model {ref.model}: announced sha256 {ref.sha256[:12]}... but the store records "
                    f"{info.sha256[:12]}..."
                )
            self._check_not_refused(lang, ref.model, ref.sha256 or info.sha256, info.signature)
            path = folder / ref.model
            fetched = await self.store.download(lang, ref.model, path)
            actual = fetched.sha256
            self._check_not_refused(lang, ref.model, actual, fetched.signature)
        except ModelRefusedBefore:
            raise
        except ModelRejected as exc:
            self._refuse(lang, ref.model, SwapResult.REJECTED, exc)
        except (StorageError, OSError) as exc:
            self._refuse(lang, ref.model, SwapResult.DOWNLOAD_FAILED, exc)
        expected = ref.sha256 or info.sha256
        if expected is None:
            logger.warning("bot %s: model %s has no recorded sha256; loading it unverified", lang, ref.model)
        elif actual != expected:
            mismatch = ModelRejected(
                f"model {ref.model}: sha256 of the downloaded archive is {actual[:12]}..., "
                f"expected {expected[:12]}... (corrupt or tampered)"
            )
            self._refuse(lang, ref.model, SwapResult.REJECTED, mismatch)
        return path, fetched

    async def _load(self, lang: str, path: Path, sha256: str, signature: str | None = None) -> LoadedModel:
        """Verify (signature included), load and warm `path` through the pool (which swaps it in)."""
        started = time.perf_counter()
        refused = (lang, path.name, sha256, signature or "")
        try:
            model = await self.pool.load(lang, path, sha256, signature)
        except ModelProbeFailed as exc:
            self._refused[refused] = str(exc)
            self._refuse(lang, path.name, SwapResult.PROBE_FAILED, exc)
        except ModelSignatureInvalid as exc:  # not signed by a trusted key: never trusted, never loaded
            self._refused[refused] = str(exc)
            self._refuse(lang, path.name, SwapResult.REJECTED, exc)
        except (GatewayError, OSError) as exc:
            self._refused[refused] = str(exc)
            self._refuse(lang, path.name, SwapResult.LOAD_FAILED, exc)
        metrics.MODEL_LOAD_DURATION.labels(lang).observe(time.perf_counter() - started)
        metrics.SWAPS.labels(lang, SwapResult.SUCCESS.value).inc()
        metrics.MODEL_INFO.labels(lang).info({"model": model.name, "sha256": sha256})
        metrics.MODEL_LOADED_AT.labels(lang).set(model.loaded_at)
        return model

    def _check_not_refused(self, lang: str, name: str, sha256: str | None, signature: str | None) -> None:
        reason = self._refused.get((lang, name, sha256 or "", signature or ""))
        if reason is not None:
            logger.debug("bot %s: not retrying %s: %s", lang, name, reason)
            raise ModelRefusedBefore(f"model {name} was refused before and has not changed: {reason}")

    def _refuse(self, lang: str, name: str, result: SwapResult, exc: BaseException) -> NoReturn:
        """Count and record a refused swap, then raise; the answering model (if any) keeps answering."""
        metrics.SWAPS.labels(lang, result.value).inc()
        reason = f"swap to {name} failed ({result.value}): {exc}"
        self.pool.mark_failed(lang, reason)
        self.pool.progress.finish(lang, name, reason)
        bot = self.pool.get(lang)
        keeping = f"; still answering with {bot.model.name}" if bot.model else "; no model answers"
        logger.error("bot %s: %s%s", lang, reason, keeping)
        if isinstance(exc, GatewayError):
            raise exc
        raise ModelError(reason) from exc

    async def load_local(self, lang: str, path: Path) -> LoadedModel:
        """Load a model file in place (embedded mode, baked-in models), with the same accounting."""
        async with self._locks[lang]:
            try:
                sha = await asyncio.to_thread(sha256_file, path)
            except OSError as exc:
                self._refuse(lang, path.name, SwapResult.DOWNLOAD_FAILED, exc)
            return await self._load(lang, path, sha)

    async def load_initial(
        self, active: ActiveModels, local: Mapping[str, Path | None], *, prefer_store: bool
    ) -> None:
        """Start-up: per language, the durable active model, else (S3) the store's newest, else `local`."""
        await asyncio.to_thread(_import_rasa)  # once, before concurrent loads race rasa's imports
        await asyncio.gather(
            *(self._load_first(lang, active, local.get(lang), prefer_store) for lang in self._locks)
        )

    async def _load_first(
        self, lang: str, active: ActiveModels, local: Path | None, prefer_store: bool
    ) -> None:
        failures: list[str] = []

        async def attempt(what: str, load: Awaitable[LoadedModel]) -> bool:
            try:
                await load
            except (GatewayError, OSError) as exc:
                failures.append(f"{what}: {exc}")
                return False
            if failures:  # serving a fallback: say why on /readyz until a swap succeeds
                self.pool.get(lang).last_error = f"serving the {what} because " + "; ".join(failures)
            return True

        try:
            record = await active.get(lang)
        except EventBusError as exc:  # Redis away: start from what we have; the subscriber reconciles later
            logger.warning("bot %s: cannot read the active model (%s); using a fallback", lang, exc)
            record = None
        if record is not None and await attempt(
            f"active model {record.current.model}", self.swap(lang, record.current)
        ):
            return
        if prefer_store:
            try:
                stored = await self.store.list_models(lang)
            except StorageError as exc:
                failures.append(f"listing the store: {exc}")
                stored = []
            tried = record.current.model if record is not None else None
            if stored and stored[-1].name != tried:
                newest = stored[-1].ref
                if await attempt(f"newest stored model {newest.model}", self.swap(lang, newest)):
                    return
        if local is not None and await attempt(f"local model {local.name}", self.load_local(lang, local)):
            return
        reasons = "; ".join(failures) or "none found"
        self.pool.mark_failed(
            lang,
            f"no usable model for {lang} ({reasons}); publish one, or train it with `gateway train {lang}`",
        )
        logger.error("bot %s: no usable model (%s); it answers with its 'unavailable' prompt", lang, reasons)


def _import_rasa() -> None:
    import rasa.core.agent  # noqa: F401
