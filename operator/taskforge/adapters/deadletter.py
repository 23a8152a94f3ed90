"""Dead-letter records: failed steps as entries of one Redis stream per namespace.

Per namespace (``<prefix>dlq:ns:<namespace>``), so that one team never sees another's
records: the web API (taskforge.web) authorizes each read and write by RBAC on
``workflowruns`` *in that namespace*, and a stream holds nothing else. Namespace names are
DNS labels (no ``:``), so the keys cannot collide. The set ``<prefix>dlq:namespaces`` lists
the namespaces that have a stream (for retention and admin tools).

The run's status is the outbox: the operator writes the record there first, ships
it here, and marks it shipped (with the stream id) only after Redis acknowledged.
A crash between the acknowledgement and the status patch means the record is
shipped again, so :meth:`DeadLetterStream.ship` is idempotent by record id: one
Lua script checks the hash ``...:ids`` (record id -> stream id) and adds
the entry and the mapping together, so a re-ship returns the first stream id.

Replays are noted in a hash ``...:replays`` (stream id -> JSON) because
stream entries cannot be edited.

Retention: every XADD trims approximately to ``dlq_max_len`` (``MAXLEN ~``: whole
radix-tree nodes go at once, so it is cheap and bounds memory at about
``max_len`` + 100 per namespace); :meth:`trim` trims exactly to the count
and by age (``XTRIM MINID`` at Redis time minus ``dlq_max_age``) and drops
``ids``/``replays`` entries whose stream entry is gone.

Before this layout one stream ``<prefix>dlq`` held every namespace: :func:`migrate_legacy`
moves its entries into the per-namespace streams (atomically per batch, so replicas may run
it at once); moved entries get new stream ids.

With Redis Cluster the keys must share a slot: use a hash-tagged prefix such as
``{taskforge}:``.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from taskforge.adapters.redis_client import RedisConnection

# KEYS: stream, ids, namespaces. ARGV: record id, max len, namespace, field, value, ...
# Returns {stream id, created}.
SHIP_LUA = """
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then return {existing, 0} end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
redis.call('HSET', KEYS[2], ARGV[1], id)
redis.call('SADD', KEYS[3], ARGV[3])
return {id, 1}
"""

# KEYS: legacy stream, legacy ids, legacy replays, namespaces. ARGV: prefix, batch, max len.
# Moves up to `batch` entries of the one-stream layout into per-namespace streams.
MIGRATE_LUA = """
local rows = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[2])
for _, row in ipairs(rows) do
  local sid, f = row[1], row[2]
  local ns, rid = 'default', ''
  for i = 1, #f, 2 do
    if f[i] == 'namespace' and f[i + 1] ~= '' then ns = f[i + 1] end
    if f[i] == 'id' then rid = f[i + 1] end
  end
  local base = ARGV[1] .. 'dlq:ns:' .. ns
  local nid = redis.call('XADD', base, 'MAXLEN', '~', ARGV[3], '*', unpack(f))
  if rid ~= '' then
    redis.call('HSET', base .. ':ids', rid, nid)
    redis.call('HDEL', KEYS[2], rid)
  end
  local note = redis.call('HGET', KEYS[3], sid)
  if note then redis.call('HSET', base .. ':replays', nid, note) end
  redis.call('SADD', KEYS[4], ns)
  redis.call('XDEL', KEYS[1], sid)
  redis.call('HDEL', KEYS[3], sid)
end
if redis.call('XLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) end
return #rows
"""

# KEYS: stream. ARGV: max len, max age ms. Returns entries removed.
TRIM_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local minid = string.format('%d-0', now - tonumber(ARGV[2]))
local n = redis.call('XTRIM', KEYS[1], 'MINID', minid)
return n + redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1])
"""

# KEYS: stream, hash. ARGV[1]: 'value' (hash values are stream ids) or 'field' (the
# fields are). ARGV[2..]: hash fields to check. Drops those whose entry is gone.
DROP_DANGLING_LUA = """
local dropped = 0
for i = 2, #ARGV do
  local sid = ARGV[i]
  if ARGV[1] == 'value' then sid = redis.call('HGET', KEYS[2], ARGV[i]) end
  if sid and #redis.call('XRANGE', KEYS[1], sid, sid) == 0 then
    dropped = dropped + redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
return dropped
"""

# KEYS: stream, replays. ARGV: stream id, JSON. Returns 1 if the entry exists.
MARK_LUA = """
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# KEYS: stream, ids, replays. Returns entries removed.
PURGE_ALL_LUA = """
local n = redis.call('XLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return n
"""

STREAM_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class BadIdError(ValueError):
    """Not a stream id (``<milliseconds>-<sequence>``, as listed): never sent to Redis."""


def check_id(stream_id: str) -> str:
    if not STREAM_ID.match(stream_id):
        raise BadIdError(f"{stream_id!r} is not a dead-letter id (they look like"
                         " 1764530000000-0, as listed)")
    return stream_id


FIELDS = ("id", "workflow", "namespace", "run", "step", "params", "error", "attempts",
          "failedAt", "shippedAt")


@dataclass(frozen=True)
class DeadLetterEntry:
    """One stream entry as the CLI shows it."""

    stream_id: str
    id: str
    workflow: str
    namespace: str
    run: str
    step: str
    params: Any
    error: str
    attempts: int
    failed_at: str
    shipped_at: str
    replayed_as: str | None = None
    replayed_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeadLetterStream:
    """Ship, list, show, mark replayed, purge and trim the records of one namespace.

    Every method raises :class:`~taskforge.adapters.redis_client.RedisUnavailableError`
    when Redis cannot be reached within the connection deadline; for
    :meth:`ship` that means "keep the record in status and try again later". Methods that
    take a stream id raise :class:`BadIdError` for a malformed one.
    """

    def __init__(self, conn: RedisConnection, namespace: str) -> None:
        if not _NAMESPACE.match(namespace):
            raise ValueError(f"{namespace!r} is not a namespace name")
        self._conn = conn
        self.namespace = namespace
        self.stream = conn.key(f"dlq:ns:{namespace}")
        self.ids = conn.key(f"dlq:ns:{namespace}:ids")
        self.replays = conn.key(f"dlq:ns:{namespace}:replays")
        self.namespaces = conn.key("dlq:namespaces")
        client = conn.client
        self._ship = client.register_script(SHIP_LUA)
        self._trim = client.register_script(TRIM_LUA)
        self._drop = client.register_script(DROP_DANGLING_LUA)
        self._mark = client.register_script(MARK_LUA)
        self._purge_all = client.register_script(PURGE_ALL_LUA)

    async def ship(self, record: Mapping[str, Any]) -> str:
        """Add ``record`` to the stream unless its ``id`` is already there; the stream id.

        ``record`` keys: ``id`` (required: the run uid and step), ``workflow``,
        ``namespace``, ``run``, ``step``, ``params`` (JSON-able), ``error``,
        ``attempts``, ``failedAt`` (datetime or ISO string). ``shippedAt`` is set here.
        The record's namespace, if given, must be this stream's.
        """
        record_id = record.get("id")
        if not isinstance(record_id, str) or not record_id:
            raise ValueError("a dead-letter record needs a non-empty string 'id'")
        if record.get("namespace") not in (None, "", self.namespace):
            raise ValueError(f"record of namespace {record.get('namespace')!r} shipped to"
                             f" the stream of {self.namespace!r}")
        fields = _encode({**record, "namespace": self.namespace}, shipped_at=datetime.now(UTC))
        args: list[str | int] = [record_id, self._conn.settings.dlq_max_len, self.namespace]
        for name in FIELDS:
            args += [name, fields[name]]
        reply = await self._conn.run(
            lambda: self._ship(keys=[self.stream, self.ids, self.namespaces], args=args),
            f"dead-letter ship {record_id!r}",
        )
        return str(reply[0])

    async def list(
        self, count: int = 50, before: str | None = None
    ) -> builtins.list[DeadLetterEntry]:
        """Newest first, at most ``count``; ``before`` (a stream id, exclusive) pages back."""
        if count < 1:
            raise ValueError("count must be at least 1")
        top = f"({check_id(before)}" if before else "+"
        rows = await self._conn.run(
            lambda: self._conn.client.xrevrange(self.stream, top, "-", count=count),
            "dead-letter list",
        )
        return await self._with_replays(_rows(rows))

    async def show(self, stream_id: str) -> DeadLetterEntry | None:
        check_id(stream_id)
        rows = await self._conn.run(
            lambda: self._conn.client.xrange(self.stream, stream_id, stream_id, count=1),
            "dead-letter show",
        )
        entries = await self._with_replays(_rows(rows))
        return entries[0] if entries else None

    async def mark_replayed(self, stream_id: str, new_run: str) -> bool:
        """Note that ``stream_id`` was replayed as run ``new_run``; False if no such entry."""
        check_id(stream_id)
        note = json.dumps({"run": new_run, "at": _iso(datetime.now(UTC))})
        done = await self._conn.run(
            lambda: self._mark(keys=[self.stream, self.replays], args=[stream_id, note]),
            "dead-letter mark replayed",
        )
        return bool(int(done))

    async def purge(self, stream_id: str) -> int:
        """Delete one entry; 1 if it existed. Its ``ids`` mapping stays until :meth:`trim`,
        so a late re-ship of the same record still does not bring it back meanwhile."""
        check_id(stream_id)

        async def both() -> int:
            async with self._conn.client.pipeline(transaction=True) as pipe:
                pipe.xdel(self.stream, stream_id)
                pipe.hdel(self.replays, stream_id)
                deleted, _ = await pipe.execute()
            return int(deleted)

        return await self._conn.run(both, "dead-letter purge")

    async def purge_all(self) -> int:
        """Delete every entry and both side hashes; the number of entries removed."""
        n = await self._conn.run(
            lambda: self._purge_all(keys=[self.stream, self.ids, self.replays], args=[]),
            "dead-letter purge all",
        )
        return int(n)

    async def length(self) -> int:
        return int(await self._conn.run(lambda: self._conn.client.xlen(self.stream), "dlq len"))

    async def trim(self, batch: int = 500) -> int:
        """Apply retention (count exactly, age by Redis time) and drop dangling mappings.

        Meant to run every few minutes. The cleanup walks the hashes with HSCAN in
        batches, each checked atomically against the stream, so Redis is never
        blocked long and a record shipped meanwhile keeps its mapping.
        """
        s = self._conn.settings
        removed = await self._conn.run(
            lambda: self._trim(
                keys=[self.stream], args=[s.dlq_max_len, round(s.dlq_max_age * 1000)]
            ),
            "dead-letter trim",
        )
        for hash_key, mode in ((self.ids, "value"), (self.replays, "field")):
            await self._drop_dangling(hash_key, mode, batch)
        return int(removed)

    async def _drop_dangling(self, hash_key: str, mode: str, batch: int) -> None:
        cursor = 0
        while True:
            cursor, page = await self._conn.run(
                lambda c=cursor: self._conn.client.hscan(hash_key, c, count=batch),  # type: ignore[misc]
                "dead-letter trim",
            )
            if page:
                fields = builtins.list(page)
                await self._conn.run(
                    lambda f=fields: self._drop(  # type: ignore[misc]
                        keys=[self.stream, hash_key], args=[mode, *f]
                    ),
                    "dead-letter trim",
                )
            if int(cursor) == 0:
                return

    async def _with_replays(
        self, rows: builtins.list[tuple[str, dict[str, str]]]
    ) -> builtins.list[DeadLetterEntry]:
        if not rows:
            return []
        sids = [sid for sid, _ in rows]
        notes = await self._conn.run(
            lambda: self._conn.client.hmget(self.replays, sids), "dead-letter replays"
        )
        return [
            _decode(sid, fields, str(note) if note is not None else None)
            for (sid, fields), note in zip(rows, notes, strict=True)
        ]


async def migrate_legacy(conn: RedisConnection, batch: int = 200) -> int:
    """Move every entry of the one-stream layout (``<prefix>dlq``) into its namespace's
    stream; the number moved. Idempotent and safe to run from several replicas."""
    script = conn.client.register_script(MIGRATE_LUA)
    keys = [conn.key("dlq"), conn.key("dlq:ids"), conn.key("dlq:replays"),
            conn.key("dlq:namespaces")]
    moved = 0
    while True:
        n = int(await conn.run(
            lambda: script(keys=keys, args=[conn.settings.prefix, batch,
                                            conn.settings.dlq_max_len]),
            "dead-letter migration",
        ))
        moved += n
        if n < batch:
            return moved


def _rows(raw: object) -> builtins.list[tuple[str, dict[str, str]]]:
    """XRANGE/XREVRANGE replies as plain strings (the client decodes responses)."""
    if not isinstance(raw, builtins.list):
        return []
    return [(str(sid), {str(k): str(v) for k, v in (fields or {}).items()}) for sid, fields in raw]


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _encode(record: Mapping[str, Any], shipped_at: datetime) -> dict[str, str]:
    failed = record.get("failedAt")
    failed_at = _iso(failed) if isinstance(failed, datetime) else str(failed or "")
    return {
        "id": str(record["id"]),
        "workflow": str(record.get("workflow") or ""),
        "namespace": str(record.get("namespace") or ""),
        "run": str(record.get("run") or ""),
        "step": str(record.get("step") or ""),
        "params": json.dumps(record.get("params") or {}, sort_keys=True, default=str),
        "error": str(record.get("error") or ""),
        "attempts": str(int(record.get("attempts") or 0)),
        "failedAt": failed_at,
        "shippedAt": _iso(shipped_at),
    }


def _decode(stream_id: str, f: Mapping[str, str], note: str | None) -> DeadLetterEntry:
    try:
        params: Any = json.loads(f.get("params") or "{}")
    except ValueError:
        params = f.get("params")
    replay = json.loads(note) if note else {}
    return DeadLetterEntry(
        stream_id=stream_id,
        id=f.get("id", ""),
        workflow=f.get("workflow", ""),
        namespace=f.get("namespace", ""),
        run=f.get("run", ""),
        step=f.get("step", ""),
        params=params,
        error=f.get("error", ""),
        attempts=int(f.get("attempts") or 0),
        failed_at=f.get("failedAt", ""),
        shipped_at=f.get("shippedAt", ""),
        replayed_as=replay.get("run"),
        replayed_at=replay.get("at"),
    )
