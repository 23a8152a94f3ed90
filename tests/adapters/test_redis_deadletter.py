"""The per-namespace dead-letter streams against a real redis-server."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from taskforge.adapters.deadletter import BadIdError, DeadLetterStream, migrate_legacy
from taskforge.adapters.redis_client import RedisConnection, RedisSettings

pytestmark = pytest.mark.anyio


def record(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"uid-{n}/fetch",
        "workflow": "nightly",
        "namespace": "team-a",
        "run": f"nightly-{n}",
        "step": "fetch",
        "params": {"date": "2026-01-01", "n": n},
        "error": "HTTP 503 from https://api.example.com",
        "attempts": 4,
        "failedAt": datetime(2026, 1, 1, 3, 0, tzinfo=UTC) + timedelta(seconds=n),
        **extra,
    }


async def test_ship_and_show(conn: RedisConnection) -> None:
    dlq = DeadLetterStream(conn, "team-a")
    sid = await dlq.ship(record())
    entry = await dlq.show(sid)
    assert entry is not None
    assert entry.stream_id == sid and entry.id == "uid-1/fetch"
    assert (entry.workflow, entry.namespace, entry.run, entry.step) == (
        "nightly", "team-a", "nightly-1", "fetch",
    )
    assert entry.params == {"date": "2026-01-01", "n": 1}
    assert entry.error.startswith("HTTP 503") and entry.attempts == 4
    assert entry.failed_at == "2026-01-01T03:00:01Z"
    assert entry.shipped_at.endswith("Z") and entry.replayed_as is None
    assert entry.to_dict()["stream_id"] == sid
    assert await dlq.show("1-0") is None
    assert dlq.stream == conn.settings.prefix + "dlq:ns:team-a"
    assert await conn.client.smembers(dlq.namespaces) == {"team-a"}


async def test_reship_after_a_crash_does_not_duplicate(conn: RedisConnection) -> None:
    dlq = DeadLetterStream(conn, "team-a")
    first = await dlq.ship(record())
    again = await asyncio.gather(*(dlq.ship(record()) for _ in range(5)))
    assert set(again) == {first}
    assert await dlq.length() == 1
    assert await conn.client.hget(dlq.ids, "uid-1/fetch") == first


async def test_a_record_needs_an_id(conn: RedisConnection) -> None:
    with pytest.raises(ValueError, match="id"):
        await DeadLetterStream(conn, "team-a").ship({"step": "x"})


async def test_list_newest_first_with_paging(conn: RedisConnection) -> None:
    dlq = DeadLetterStream(conn, "team-a")
    sids = [await dlq.ship(record(n)) for n in range(1, 8)]
    page1 = await dlq.list(count=3)
    assert [e.stream_id for e in page1] == sids[::-1][:3]
    page2 = await dlq.list(count=3, before=page1[-1].stream_id)
    assert [e.stream_id for e in page2] == sids[::-1][3:6]
    page3 = await dlq.list(count=3, before=page2[-1].stream_id)
    assert [e.run for e in page3] == ["nightly-1"]
    assert await dlq.list(before=sids[0]) == []


async def test_mark_replayed(conn: RedisConnection) -> None:
    dlq = DeadLetterStream(conn, "team-a")
    sid = await dlq.ship(record())
    assert await dlq.mark_replayed(sid, "nightly-1-replay-x7k2")
    entry = await dlq.show(sid)
    assert entry is not None and entry.replayed_as == "nightly-1-replay-x7k2"
    assert entry.replayed_at is not None and entry.replayed_at.endswith("Z")
    assert (await dlq.list())[0].replayed_as == "nightly-1-replay-x7k2"
    assert not await dlq.mark_replayed("1-0", "nope")


async def test_purge_one_and_all(conn: RedisConnection) -> None:
    dlq = DeadLetterStream(conn, "team-a")
    sids = [await dlq.ship(record(n)) for n in range(1, 4)]
    await dlq.mark_replayed(sids[0], "again")
    assert await dlq.purge(sids[0]) == 1
    assert await dlq.purge(sids[0]) == 0
    assert await dlq.show(sids[0]) is None
    assert not await conn.client.hexists(dlq.replays, sids[0])
    # Until trim, the id mapping stays: a late re-ship does not resurrect it.
    assert await dlq.ship(record(1)) == sids[0]
    assert await dlq.length() == 2
    assert await dlq.purge_all() == 2
    assert await dlq.length() == 0
    assert not await conn.client.exists(dlq.stream, dlq.ids, dlq.replays)
    assert await dlq.ship(record(1)) != sids[0]  # after purge all a record is new again


async def test_retention_by_count(settings: RedisSettings) -> None:
    conn = RedisConnection(replace(settings, dlq_max_len=100))
    try:
        dlq = DeadLetterStream(conn, "team-a")
        sids = [await dlq.ship(record(n)) for n in range(250)]
        # XADD trims approximately (whole nodes of 100): bounded, cheap, not exact.
        assert 100 <= await dlq.length() <= 200
        await dlq.trim()
        assert await dlq.length() == 100
        kept = [e.stream_id for e in await dlq.list(count=1000)]
        assert kept == sids[::-1][:100]
        assert await conn.client.hlen(dlq.ids) == 100  # mappings of trimmed entries dropped
    finally:
        await conn.aclose()


async def test_retention_by_age(settings: RedisSettings) -> None:
    conn = RedisConnection(replace(settings, dlq_max_age=1.0))
    try:
        dlq = DeadLetterStream(conn, "team-a")
        old = await dlq.ship(record(1))
        await dlq.mark_replayed(old, "r")
        await asyncio.sleep(1.1)
        new = await dlq.ship(record(2))
        assert await dlq.trim() == 1
        assert [e.stream_id for e in await dlq.list()] == [new]
        assert await conn.client.hkeys(dlq.ids) == ["uid-2/fetch"]
        assert await conn.client.hlen(dlq.replays) == 0
    finally:
        await conn.aclose()


async def test_trim_cleans_mappings_in_batches(conn: RedisConnection) -> None:
    dlq = DeadLetterStream(conn, "team-a")
    sids = [await dlq.ship(record(n)) for n in range(30)]
    for sid in sids[:20]:
        await dlq.purge(sid)
    assert await conn.client.hlen(dlq.ids) == 30
    await dlq.trim(batch=7)
    assert await conn.client.hlen(dlq.ids) == 10


async def test_namespaces_are_apart(conn: RedisConnection) -> None:
    a, b = DeadLetterStream(conn, "team-a"), DeadLetterStream(conn, "team-b")
    sid = await a.ship(record(1))
    await b.ship(record(2, namespace="team-b"))
    assert [e.run for e in await a.list()] == ["nightly-1"]
    assert [e.run for e in await b.list()] == ["nightly-2"]
    found = await b.show(sid)  # stream ids are per stream: never team-a's entry
    assert found is None or found.run == "nightly-2"
    assert await b.purge_all() == 1 and await a.show(sid) is not None
    with pytest.raises(ValueError, match="namespace"):
        await a.ship(record(3, namespace="team-b"))
    with pytest.raises(ValueError, match="namespace"):
        DeadLetterStream(conn, "Not/A:namespace")


@pytest.mark.parametrize(
    "bad", ["", "abc", "1-", "-1", "1-0-0", "+", "(1-0", "1 -0", "9" * 30 + "-0"]
)
async def test_a_malformed_id_never_reaches_redis(conn: RedisConnection, bad: str) -> None:
    dlq = DeadLetterStream(conn, "team-a")
    for call in (dlq.show(bad), dlq.purge(bad), dlq.mark_replayed(bad, "r"),
                 dlq.list(before=bad or "x")):
        with pytest.raises(BadIdError, match="not a dead-letter id"):
            await call


async def test_legacy_stream_is_moved_per_namespace(conn: RedisConnection) -> None:
    legacy, ids, replays = conn.key("dlq"), conn.key("dlq:ids"), conn.key("dlq:replays")
    old = []
    for n, ns in ((1, "team-a"), (2, "team-b"), (3, "team-a")):
        sid = await conn.client.xadd(legacy, {"id": f"uid-{n}/fetch", "namespace": ns,
                                              "run": f"r{n}", "params": "{}"})
        await conn.client.hset(ids, f"uid-{n}/fetch", sid)
        old.append(sid)
    await conn.client.hset(replays, old[0], '{"run": "again", "at": "2026-01-01T00:00:00Z"}')
    assert await migrate_legacy(conn, batch=2) == 3
    assert not await conn.client.exists(legacy, ids, replays)
    a, b = DeadLetterStream(conn, "team-a"), DeadLetterStream(conn, "team-b")
    assert [e.run for e in await a.list()] == ["r3", "r1"]
    assert [e.run for e in await b.list()] == ["r2"]
    assert (await a.list())[1].replayed_as == "again"
    # a re-ship of a migrated record (a crash before its status patch) finds it
    assert await a.ship(record(1) | {"id": "uid-1/fetch"}) == (await a.list())[1].stream_id
    assert await migrate_legacy(conn) == 0
