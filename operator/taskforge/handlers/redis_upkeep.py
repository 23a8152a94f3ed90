"""Background upkeep of the operator's Redis state, beside the per-reconcile calls of limits.py.

Two loops that no reconcile drives: a health probe, so the Workflows' `LimitsEnforced`
condition follows Redis even while no limit is asked (and the one-time move of dead letters
from the old one-stream layout once Redis answers); and the renewal of slot leases and
waiting steps' places, so a crashed operator's leases lapse instead of holding slots forever.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from taskforge.adapters.deadletter import migrate_legacy
from taskforge.adapters.redis_client import RedisCallError
from taskforge.handlers.limits import SLOT_TTL, Limits

log = logging.getLogger("taskforge.limits")
RENEW_EVERY = SLOT_TTL / 3
PROBE_UP, PROBE_DOWN = 5.0, 1.0


async def watch_redis(limits: Limits) -> None:
    """Background task: PING now and then, so `outage()` (and the Workflows' LimitsEnforced
    condition, through the health callback) follows Redis even when no limit is asked;
    often while it is down, so the condition comes back within a second of Redis.

    Also moves dead letters of the old one-stream layout into the per-namespace streams
    once Redis answers (see adapters/deadletter.migrate_legacy)."""
    if limits.conn is None:
        return
    migrated = False
    while True:
        if not migrated:
            try:
                moved = await migrate_legacy(limits.conn)
                migrated = True
                if moved:
                    log.info("moved %d dead-letter records into per-namespace streams", moved)
            except RedisCallError as exc:
                log.warning("dead-letter migration waits for Redis: %s", exc)
        await asyncio.sleep(PROBE_DOWN if not limits.conn.healthy else PROBE_UP)
        await limits.conn.ping()


async def renew_forever(limits: Limits, leases: Any, places: Any = tuple) -> None:
    """Background task: renew leases of running runs and steps, and the places of waiting
    steps, every RENEW_EVERY seconds."""
    while True:
        await asyncio.sleep(RENEW_EVERY)
        try:
            await limits.renew(leases(), places())
        except Exception:
            log.exception("renewing slot leases failed")
