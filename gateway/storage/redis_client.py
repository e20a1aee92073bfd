"""The process's one pooled Redis client (redis.asyncio from redis-py), and its key layout.

aioredis is archived and its last release cannot even be imported on Python 3.11+ (duplicate base
class TimeoutError); redis-py ships the same asyncio API as `redis.asyncio`. With `redis.cluster` the
client is redis-py's asyncio `RedisCluster`: it routes every command (and every EVALSHA) by the slot of
its keys, which is why the keys one script touches share a hash tag (see `conversation_key`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import ConfigError
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
# RedisClusterException (no reachable node, slots not covered during a failover) is not a RedisError.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, *TRANSIENT_ERRORS)

# A single Redis (or a replicated one behind one address) or a Redis Cluster: both speak the commands
# the gateway uses; the differences (pub/sub, closing) are handled where they matter.
RedisClient: TypeAlias = aioredis.Redis | RedisCluster


def key(settings: Settings, lang: str, kind: str, *parts: str) -> str:
    """`{prefix}:{env}:{lang}:{kind}[:part...]`, e.g. gateway:production:en:active."""
    return ":".join((settings.redis.key_prefix, settings.environment, lang, kind, *parts))


def conversation_key(settings: Settings, lang: str, kind: str, sender_id: str) -> str:
    """`{prefix}:{env}:{lang}:{{sender}}:{kind}`, e.g. gateway:production:en:{en:abc}:tracker.

    The braces are a Redis Cluster hash tag: only `{sender}` is hashed, so a conversation's lock and
    tracker share a slot and one script can touch both. (The webhook's sender ids are already
    `{lang}:{session}`, so the tag reads {lang:session}.) Keys of this layout can never equal keys of
    the layout before it (`legacy_conversation_key`): after the language comes `{` instead of a kind.
    """
    return f"{settings.redis.key_prefix}:{settings.environment}:{lang}:{{{sender_id}}}:{kind}"


def legacy_conversation_key(settings: Settings, lang: str, kind: str, sender_id: str) -> str:
    """The key layout before hash tags, `{prefix}:{env}:{lang}:{kind}:{sender}` (see migrate_keys.py)."""
    return key(settings, lang, kind, sender_id)


def make_client(url: str, socket_timeout: float, cluster: bool = False) -> RedisClient:
    """A pooled client that fails fast when Redis is away and reconnects by itself.

    With `cluster`, `url` names any one node; the client discovers the others and follows failovers
    (a command that meets a dead node drops the topology and rediscovers it on the next command).
    """
    if cluster:
        return RedisCluster.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            # One retry after a rediscovery: a turn waits for the failover no longer than its deadline.
            cluster_error_retry_attempts=1,
            decode_responses=False,
        )
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
async def redis_client(settings: Settings) -> AsyncIterator[RedisClient | None]:
    """The configured client (None in embedded mode), closed with its pool on exit."""
    if settings.redis.url is None:
        yield None
        return
    client = make_client(settings.redis.url, settings.redis.socket_timeout_seconds, settings.redis.cluster)
    try:
        try:
            await client.ping()
            if not settings.redis.cluster:
                await _refuse_cluster_node(client, settings.redis.url)
        except (*TRANSIENT_ERRORS, RedisClusterException) as exc:
            if _not_a_cluster(exc):
                raise ConfigError(
                    f"Redis at {_redacted(settings.redis.url)} is not a Redis Cluster node but redis.cluster "
                    "is true: set redis.cluster: false (GATEWAY_REDIS_CLUSTER=false) or point redis.url at "
                    "a cluster node"
                ) from None
            # Not fatal: the gateway starts, answers "temporarily unavailable" and reconnects later.
            logger.warning("Redis at %s is not reachable yet: %s", _redacted(settings.redis.url), exc)
        yield client
    finally:
        await close_client(client)


def _not_a_cluster(exc: BaseException) -> bool:
    """RedisCluster's discovery met a node that answers but has cluster mode off (redis-py 4.6 wording)."""
    cause = exc.__cause__
    return isinstance(cause, RedisClusterException) and "Cluster mode is not enabled" in str(cause)


async def _refuse_cluster_node(client: RedisClient, url: str) -> None:
    """A plain client on a cluster node would fail every turn whose keys live on another node (MOVED)."""
    info = await client.info("cluster")
    if info.get("cluster_enabled") in (1, "1"):
        raise ConfigError(
            f"Redis at {_redacted(url)} is a Redis Cluster node but redis.cluster is false: "
            "set redis.cluster: true (GATEWAY_REDIS_CLUSTER=true)"
        )


async def close_client(client: RedisClient) -> None:
    """Close `client` and every connection it holds (RedisCluster's close takes no arguments)."""
    if isinstance(client, RedisCluster):
        await client.close()
    else:
        await client.close(close_connection_pool=True)


def _redacted(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
