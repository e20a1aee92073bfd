"""The process's one pooled Redis client (redis.asyncio from redis-py), and its key layout.

aioredis is archived and its last release cannot even be imported on Python 3.11+ (duplicate base
class TimeoutError); redis-py ships the same asyncio API as `redis.asyncio`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.settings import Settings

logger = logging.getLogger(__name__)

# Errors that mean "Redis is unreachable or slow right now" (retry later, tell the user politely).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)
# Anything a command can raise when Redis cannot serve it now (also LOADING after a restart, READONLY...).
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, *TRANSIENT_ERRORS)


def key(settings: Settings, lang: str, kind: str, *parts: str) -> str:
    """`{prefix}:{env}:{lang}:{kind}[:part...]`, e.g. gateway:production:en:tracker:abc."""
    return ":".join((settings.redis.key_prefix, settings.environment, lang, kind, *parts))


def make_client(url: str, socket_timeout: float) -> aioredis.Redis:
    """A pooled client that fails fast when Redis is away and reconnects by itself."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        decode_responses=False,
    )


@asynccontextmanager
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis | None]:
    """The configured client (None in embedded mode), closed with its pool on exit."""
    if settings.redis.url is None:
        yield None
        return
    client = make_client(settings.redis.url, settings.redis.socket_timeout_seconds)
    try:
        await client.ping()
    except TRANSIENT_ERRORS as exc:
        # Not fatal: the gateway starts, answers "temporarily unavailable" and reconnects later.
        logger.warning("Redis at %s is not reachable yet: %s", _redacted(settings.redis.url), exc)
    try:
        yield client
    finally:
        await client.close(close_connection_pool=True)


def _redacted(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
