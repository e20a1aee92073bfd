"""The agent pool: one bot per language, each holding the model that currently answers."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gateway import metrics
from gateway.agents import dialogue
from gateway.agents.archive import verify_archive
from gateway.agents.custom_actions import ActionClient, BotActions
from gateway.agents.inference import InferenceThread, OwnerLoopTrackerStore
from gateway.agents.loader import LoadedModel, ModelSummary, load_model, summary
from gateway.agents.signing import Verifier
from gateway.agents.slots import HELD, TurnSlots
from gateway.agents.swap_progress import SwapProgress
from gateway.errors import BotNotReady, GatewayError, ModelError, ModelProbeFailed, UnknownBot
from gateway.settings import BotSettings
from gateway.storage.locks import ConversationLocks, InMemoryLocks

if TYPE_CHECKING:
    from rasa.core.tracker_store import TrackerStore

    from gateway.agents.monitor import ProbeResult

logger = logging.getLogger(__name__)

T = TypeVar("T")


class BotState(str, enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class Bot:
    """One language: its settings, the model answering now, and its load history."""

    def __init__(self, settings: BotSettings, tracker_store: TrackerStore) -> None:
        self.settings = settings
        self.lang = settings.lang
        self.tracker_store = tracker_store
        self.model: LoadedModel | None = None
        self.previous: ModelSummary | None = None  # no agent: the old one is released after a swap
        self.state = BotState.LOADING
        self.since = time.time()
        self.last_error: str | None = None
        self.last_probe: ProbeResult | None = None  # set by the health monitor and /bots/{lang}/ping
        self.actions: BotActions | None = None  # custom actions and NLG from the bot's endpoints.yml

    @property
    def ready(self) -> bool:
        return self.model is not None

    def require_model(self) -> LoadedModel:
        """The answering model, or BotNotReady."""
        model = self.model
        if model is None:
            raise BotNotReady(f"bot {self.lang} has no model loaded yet ({self.state.value})")
        return model

    def _set_state(self, state: BotState) -> None:
        if state is not self.state:
            self.state = state
            self.since = time.time()

    def describe(self) -> dict[str, Any]:
        """JSON-friendly status."""
        model = self.model
        return {
            "lang": self.lang,
            "state": self.state.value,
            "since": self.since,
            "locales": list(self.settings.locales),
            "model": model.name if model else None,
            "sha256": model.sha256 if model else None,
            "loaded_at": model.loaded_at if model else None,
            "previous": self.previous.name if self.previous else None,
            "last_error": self.last_error,
            "last_probe": self.last_probe.describe() if self.last_probe else None,
        }


class AgentPool:
    """Holds every language's bot; loads models off the loop and swaps them in one assignment."""

    def __init__(
        self,
        bots: Mapping[str, BotSettings],
        tracker_stores: Mapping[str, TrackerStore],
        locks: ConversationLocks | None = None,
        verifier: Verifier | None = None,
        running_turns: int = 0,
        inference: InferenceThread | None = None,
        graph_runner: str = "sequential",
        actions: Mapping[str, BotActions] | None = None,
        max_batch: int = 1,
    ) -> None:
        self.bots = {lang: Bot(cfg, tracker_stores[lang]) for lang, cfg in bots.items()}
        if actions is None:  # each bot's own endpoints.yml; action servers need a started ActionClient
            client = ActionClient()
            actions = {lang: BotActions(cfg, client) for lang, cfg in bots.items()}
        for lang, bot in self.bots.items():
            bot.actions = actions.get(lang)
        # `is None`, not `or`: an idle lock set has length 0 and is falsy.
        self.locks: ConversationLocks = locks if locks is not None else InMemoryLocks()
        self.verifier = verifier  # the keys models must be signed with (none: unsigned models load)
        # With an inference thread, turns leave the server's loop altogether.
        self.inference = inference
        self.graph_runner = graph_runner
        self.max_batch = max_batch  # concurrent turns of a DIET model parsed in one call (batched_nlu.py)
        # Turns are CPU that never yields: starting only a few per loop pass keeps every pass short (on the
        # server's loop: /healthz and /metrics stay fast) and finishes turns in arrival order. 0 = no cap.
        self.turn_slots = TurnSlots(running_turns) if running_turns > 0 else None
        self.progress = SwapProgress()  # each load's phase, for the console (see swap_progress.py)

    def get(self, lang: str) -> Bot:
        """The bot for `lang`, or UnknownBot."""
        try:
            return self.bots[lang]
        except KeyError:
            raise UnknownBot(f"no bot for language {lang!r}; configured: {', '.join(self.bots)}") from None

    @property
    def ready(self) -> bool:
        return all(bot.ready for bot in self.bots.values())

    def not_ready(self) -> list[str]:
        """Languages that cannot answer yet."""
        return [lang for lang, bot in self.bots.items() if not bot.ready]

    async def load(
        self, lang: str, path: Path, sha256: str | None = None, signature: str | None = None
    ) -> LoadedModel:
        """Verify `path` (see archive.verify_archive), load it for `lang`, warm it, then make it answer.

        Requests already running keep the model object they started with; on any failure the
        current model keeps answering and the error is recorded on the bot.
        """
        bot = self.get(lang)
        if bot.model is None:
            bot._set_state(BotState.LOADING)
        self.progress.begin(lang, path.name)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            # Before Rasa sees the file: it unpickles and extracts whatever the archive holds.
            digest = await loop.run_in_executor(
                None, verify_archive, path, sha256, self.verifier, signature, lang
            )
            model = await load_model(
                path,
                bot.tracker_store,
                digest,
                self.graph_runner,
                bot.actions,
                self.max_batch,
                lambda stage, size: metrics.BATCH_SIZE.labels(lang, stage).observe(size),
            )
            if self.inference is not None and model.agent.processor is not None:
                # Tracker-store calls go back to the loop that owns the Redis connections.
                model.agent.processor.tracker_store = OwnerLoopTrackerStore(
                    model.agent.processor.tracker_store, loop
                )
            await self._check_actions(bot, model)
            self.progress.warming(lang, path.name)
            try:
                reply = await self._run(dialogue.probe(model, bot.settings.probe))
            except Exception as exc:  # whatever a fresh model's first turn raises, it cannot serve
                raise ModelProbeFailed(
                    f"model {path.name} failed its probe {bot.settings.probe!r}: {type(exc).__name__}: {exc}"
                ) from exc
            if not dialogue.answered(reply):  # a mute model would leave the language silent
                raise ModelProbeFailed(
                    f"model {path.name} answered nothing to its probe {bot.settings.probe!r}: check that its "
                    "domain has responses for the probe's intent (run `gateway test` before publishing)"
                )
        except (GatewayError, OSError) as exc:
            self._refused(bot, path, exc)
            raise
        except Exception as exc:  # a defect of ours, not the model's: the bot must not stay "loading"
            logger.exception("bot %s: loading model %s failed unexpectedly", lang, path.name)
            error = ModelError(f"loading model {path.name} failed unexpectedly: {type(exc).__name__}: {exc}")
            self._refused(bot, path, error)
            raise error from exc
        # One assignment: turns already running keep the old agent until they finish, then it is freed.
        bot.previous, bot.model = (summary(bot.model) if bot.model else None), model
        # The model answers through its own copy of the store; the language's store mirrors its domain.
        bot.tracker_store.domain = model.agent.domain
        bot.last_error = None
        bot._set_state(BotState.READY)
        self.progress.finish(lang, path.name)
        metrics.MODEL_LOAD_DURATION.labels(lang).observe(time.perf_counter() - started)
        metrics.MODEL_INFO.labels(lang).info({"model": model.name, "sha256": model.sha256 or ""})
        metrics.MODEL_LOADED_AT.labels(lang).set(model.loaded_at)
        return model

    def _refused(self, bot: Bot, path: Path, exc: BaseException) -> None:
        if bot.model is not None:  # loading pointed the shared tracker store at the refused domain
            bot.tracker_store.domain = bot.model.agent.domain
        bot.last_error = str(exc)
        if bot.model is None:
            bot._set_state(BotState.FAILED)
        logger.error("bot %s: model %s refused: %s", bot.lang, path.name, exc)
        self.progress.finish(bot.lang, path.name, str(exc))

    async def _check_actions(self, bot: Bot, model: LoadedModel) -> None:
        """Refuse a model whose domain names custom actions this bot cannot run (part of the warm-up)."""
        processor = model.agent.processor
        if bot.actions is None or processor is None or model.agent.domain is None:
            return
        reason = await bot.actions.cannot_run(processor.action_endpoint, model.agent.domain)
        if reason is not None:
            raise ModelProbeFailed(f"model {model.name} failed its warm-up: {reason}")

    def mark_failed(self, lang: str, error: str) -> None:
        """Record that `lang` could not get a model at all (e.g. none trained)."""
        bot = self.get(lang)
        bot.last_error = error
        if bot.model is None:
            bot._set_state(BotState.FAILED)

    async def respond(
        self,
        lang: str,
        sender_id: str,
        text: str,
        metadata: dict[str, Any] | None = None,
        input_channel: str = "google",
    ) -> dialogue.BotMessages:
        """Run one turn for `sender_id`, after any earlier turn of the same conversation."""
        bot = self.get(lang)
        async with self.locks.hold(f"{lang}:{sender_id}"):
            # Take the model inside the lock: a swap between turns applies to the next turn.
            model = bot.require_model()
            # Timed inside the lock: waiting for an earlier turn is not the bot's inference time. The slot
            # is taken inside the conversation lock too, so a slot holder never waits for another.
            with metrics.INFERENCE_LATENCY.labels(lang).time():
                return await self._run(self._slotted(model, sender_id, text, metadata, input_channel))

    async def ping(self, lang: str, text: str | None = None) -> dialogue.BotMessages:
        """Probe `lang` on a throwaway tracker."""
        bot = self.get(lang)
        return await self._run(dialogue.probe(bot.require_model(), text or bot.settings.probe))

    async def _slotted(
        self,
        model: LoadedModel,
        sender_id: str,
        text: str,
        metadata: dict[str, Any] | None,
        input_channel: str,
    ) -> dialogue.BotMessages:
        async with self.turn_slots or contextlib.nullcontext():
            held = HELD.set(self.turn_slots)  # lent while the turn waits for its micro-batch
            try:
                return await dialogue.run_turn(model, sender_id, text, metadata, input_channel)
            finally:
                HELD.reset(held)

    async def _run(self, turn: Coroutine[Any, Any, T]) -> T:
        """Await a turn where turns run: the inference thread when there is one, else right here."""
        if self.inference is None:
            return await turn
        return await self.inference.run(turn)
