"""Move conversations from the key layout before hash tags to the current one (`gateway migrate-keys`).

Before: `{prefix}:{env}:{lang}:tracker:{sender}`; now: `{prefix}:{env}:{lang}:{{sender}}:tracker` (see
redis_client.conversation_key). Old lock keys are not moved: they are leases that free themselves within
`trackers.lock_lease_seconds`.

Each key moves in steps that are safe to repeat, so an interrupted run is finished by running again:
read the old value and its remaining TTL, `SET NX` the new key with that value and TTL (never overwriting
a conversation already under the new layout), then delete the old key only while it still holds the
value that was copied. The steps touch one key each, so this works on a single Redis and on a cluster
(where the old and the new key of a conversation live in different slots). Keys are found with SCAN
(never KEYS, which blocks Redis while it walks the whole keyspace).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields

from redis.commands.core import AsyncScript

from gateway.errors import StorageError
from gateway.settings import Settings
from gateway.storage.redis_client import (
    REDIS_ERRORS,
    RedisClient,
    conversation_key,
    legacy_conversation_key,
)

logger = logging.getLogger(__name__)

# Delete KEYS[1] only while it holds ARGV[1] (a conversation written again after the copy stays).
_DELETE_IF_SAME = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

PROGRESS_EVERY = 1000


@dataclass
class MigrationReport:
    """What one run found and did, per outcome."""

    found: int = 0  # old-layout tracker keys seen by SCAN
    moved: int = 0  # copied to the new key (with the old TTL) and the old key deleted
    finished: int = 0  # the new key already held the same conversation (an interrupted run): old deleted
    expired: int = 0  # gone between SCAN and the copy (its TTL ran out, or its conversation moved on)
    kept: int = 0  # the new key holds another conversation (started under the new layout): old kept
    changed: int = 0  # the old key was written again during its move (an old gateway still runs): kept

    def summary(self) -> str:
        return ", ".join(f"{f.name} {getattr(self, f.name)}" for f in fields(self))


async def migrate_keys(
    client: RedisClient,
    settings: Settings,
    langs: Iterable[str],
    progress: Callable[[str], None],
    *,
    dry_run: bool = False,
) -> MigrationReport:
    """Move every old-layout tracker of `langs` in `settings.environment`; `progress` gets status lines."""
    report = MigrationReport()
    delete_if_same = client.register_script(_DELETE_IF_SAME)
    for lang in langs:
        head = legacy_conversation_key(settings, lang, "tracker", "")
        try:
            async for found in client.scan_iter(match=head + "*", count=500):
                old = bytes(found)
                sender = old[len(head) :].decode("utf-8", errors="surrogateescape")
                new = conversation_key(settings, lang, "tracker", sender)
                report.found += 1
                if not dry_run:
                    outcome = await _move(client, delete_if_same, old, new.encode("utf-8", "surrogateescape"))
                    setattr(report, outcome, getattr(report, outcome) + 1)
                if report.found % PROGRESS_EVERY == 0:
                    progress(f"  {report.found} keys so far ({report.summary()})")
        except REDIS_ERRORS as exc:
            raise StorageError(
                f"migrating {head}* stopped after {report.found} keys ({report.summary()}): "
                f"{type(exc).__name__}: {exc}; nothing was lost: run the command again to go on"
            ) from exc
        progress(f"{lang}: done, {report.found} keys so far ({report.summary()})")
    return report


async def _move(client: RedisClient, delete_if_same: AsyncScript, old: bytes, new: bytes) -> str:
    """Move one key; returns the MigrationReport field that counts the outcome."""
    blob = await client.get(old)
    ttl_ms = await client.pttl(old)
    if blob is None or ttl_ms == -2:  # -2: no such key; -1: no expiry
        return "expired"
    blob = bytes(blob)
    if ttl_ms > 0:
        copied = await client.set(new, blob, nx=True, px=ttl_ms)
    else:
        copied = await client.set(new, blob, nx=True)
    if not copied and await client.get(new) != blob:
        return "kept"
    if not await delete_if_same(keys=[old], args=[blob]) and await client.exists(old):
        # Written again meanwhile: take the stale copy back, so that the next run moves the new value.
        if copied:
            await delete_if_same(keys=[new], args=[blob])
        return "changed"
    return "moved" if copied else "finished"
