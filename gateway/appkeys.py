"""Typed keys of the aiohttp application state."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.agents.custom_actions import ActionClient, BotActions
from gateway.agents.monitor import Monitor
from gateway.agents.pool import AgentPool
from gateway.agents.swapper import Swapper
from gateway.auth.google_token import GoogleVerifier
from gateway.brokers.publisher import Publishers
from gateway.routing.inflight import InFlight
from gateway.routing.locale import LocaleRouter
from gateway.settings import Settings
from gateway.storage.active_models import ActiveModels
from gateway.storage.events import EventBus
from gateway.storage.model_store import ModelStore
from gateway.storage.redis_client import RedisClient

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", AgentPool)
ROUTER = web.AppKey("router", LocaleRouter)
# Turns that outlived their request's deadline; they finish in the background so trackers stay whole.
BACKGROUND = web.AppKey("background", set[asyncio.Task[object]])
STARTUP = web.AppKey("startup", asyncio.Task[None])
# The process's one pooled Redis client; None in embedded mode.
REDIS: web.AppKey[RedisClient | None] = web.AppKey("redis")
# Present only while google.project_id is set (see gateway/auth/google.py).
GOOGLE_VERIFIER = web.AppKey("google_verifier", GoogleVerifier)
MONITOR = web.AppKey("monitor", Monitor)
# Requests being handled; shutdown waits for them (gateway/server.py).
IN_FLIGHT = web.AppKey("in_flight", InFlight)
MODEL_STORE = web.AppKey("model_store", ModelStore)
ACTIVE_MODELS = web.AppKey("active_models", ActiveModels)
EVENTS = web.AppKey("events", EventBus)
SWAPPER = web.AppKey("swapper", Swapper)
# Per language, the event broker publisher of its stored events (gateway/brokers/).
EVENT_PUBLISHERS = web.AppKey("event_publishers", Publishers)
# Custom actions per language (bots/<lang>/endpoints.yml) and the HTTP client action servers are called on.
ACTION_CLIENT = web.AppKey("action_client", ActionClient)
BOT_ACTIONS: web.AppKey[dict[str, BotActions]] = web.AppKey("bot_actions")
