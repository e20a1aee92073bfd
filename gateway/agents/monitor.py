"""The health monitor: probes every bot on a throwaway tracker, keeps `gateway_bot_up`, logs changes once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway import metrics
from gateway.agents import dialogue
from gateway.errors import BotNotReady
from gateway.settings import MonitorSettings

if TYPE_CHECKING:
    from gateway.agents.pool import AgentPool, Bot

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    """One probe of one bot: did it answer, what, how fast, with which model."""

    lang: str
    ok: bool
    result: str  # ok, failed, timeout (the gateway_probes_total label)
    text: str
    reply: tuple[str, ...]
    latency_seconds: float
    at: float  # wall-clock time, for humans
    model: str | None
    error: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary."""
        return {
            "ok": self.ok,
            "result": self.result,
            "text": self.text,
            "reply": list(self.reply),
            "latency_seconds": round(self.latency_seconds, 4),
            "at": self.at,
            "model": self.model,
            "error": self.error,
        }


async def probe(
    pool: AgentPool, lang: str, timeout: float, text: str | None = None, *, record: bool = True
) -> ProbeResult:
    """Send `text` (default: the bot's probe text) to `lang` on a throwaway tracker.

    With `record`, the result becomes the bot's last probe, moves the probe metrics and
    `gateway_bot_up`, and a change of up/down is logged (once per change, not per probe).
    Raises UnknownBot for a language that is not configured.
    """
    bot = pool.get(lang)
    text = text or bot.settings.probe
    model = bot.model.name if bot.model else None
    started = time.perf_counter()
    error: str | None = None
    reply: tuple[str, ...] = ()
    try:
        messages = await asyncio.wait_for(pool.ping(lang, text), timeout)
    except asyncio.TimeoutError:
        outcome, error = "timeout", f"no answer within {timeout:g}s"
    except BotNotReady as exc:
        outcome, error = "failed", str(exc)
    except Exception as exc:  # a health check must report whatever a broken agent raises, not crash
        logger.debug("bot %s: probe raised", lang, exc_info=True)
        outcome, error = "failed", f"{type(exc).__name__}: {exc}"
    else:
        reply = tuple(str(m["text"]) for m in messages if m.get("text"))
        outcome = "ok" if dialogue.answered(messages) else "failed"
        if outcome == "failed":
            error = f"no reply to {text!r}"
    result = ProbeResult(
        lang=lang,
        ok=outcome == "ok",
        result=outcome,
        text=text,
        reply=reply,
        latency_seconds=time.perf_counter() - started,
        at=time.time(),
        model=model,
        error=error,
    )
    if record:
        _record(bot, result)
    return result


def _record(bot: Bot, result: ProbeResult) -> None:
    previous = bot.last_probe
    bot.last_probe = result
    metrics.PROBES.labels(bot.lang, result.result).inc()
    metrics.PROBE_LATENCY.labels(bot.lang).observe(result.latency_seconds)
    metrics.BOT_UP.labels(bot.lang).set(1 if result.ok else 0)
    if previous is not None and previous.ok == result.ok:
        return  # no change: stay quiet so a long outage is one log line, not one per tick
    if result.ok:
        logger.info(
            "bot %s is up: model %s answered %r in %.3fs",
            bot.lang,
            result.model,
            result.text,
            result.latency_seconds,
        )
    else:
        logger.error("bot %s is down: %s (model %s)", bot.lang, result.error, result.model)


class Monitor:
    """Probes every bot each `interval_seconds`; one round at a time, bots probed concurrently."""

    def __init__(self, pool: AgentPool, settings: MonitorSettings) -> None:
        self.pool = pool
        self.settings = settings
        self.rounds = 0

    async def probe_all(self) -> dict[str, ProbeResult]:
        """Probe every bot once, concurrently; returns the result per language."""
        langs = list(self.pool.bots)
        results = await asyncio.gather(
            *(probe(self.pool, lang, self.settings.timeout_seconds) for lang in langs)
        )
        self.rounds += 1
        return dict(zip(langs, results, strict=True))

    async def run(self, startup: Awaitable[object] | None = None) -> None:
        """Probe forever (until cancelled); first wait for the initial model load, if given."""
        for lang in self.pool.bots:
            metrics.BOT_UP.labels(lang).set(0)  # unknown until the first probe answers
        if startup is not None:
            # Probing bots that are still loading would only log noise; wait (never fail) for it.
            await asyncio.wait({asyncio.ensure_future(startup)})
        logger.info(
            "health monitor: probing %s every %gs (timeout %gs)",
            ", ".join(self.pool.bots),
            self.settings.interval_seconds,
            self.settings.timeout_seconds,
        )
        while True:
            await self.probe_all()
            await asyncio.sleep(self.settings.interval_seconds)
