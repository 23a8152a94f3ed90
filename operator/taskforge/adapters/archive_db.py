"""The run archive's PostgreSQL side: connect, migrate, write records, enforce retention.

Driver: psycopg 3 (async), one connection per user; no pool, because the operator has one
writer task and the readers (CLI, HTTP API) hold a connection for a request at most.

Migrations are the numbered SQL files in `archive_migrations/`, applied in order by the
operator that leads, when it first reaches the database (not by a Helm hook): one path for
the local cluster, the chart and any other install, and no Job that needs the URL's
Secret and its own RBAC. Every replica may try at once (a new leader while the old one
still finishes), so they apply under a PostgreSQL advisory lock and record each applied
version in `schema_migrations`; a re-run finds every version there and does nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from taskforge.adapters.archive_records import Retention

MIGRATIONS_PACKAGE = "taskforge.adapters.archive_migrations"
MIGRATION_LOCK = 0x7446_6172_6368_6976  # "tFarchiv": the advisory lock's key, a bigint
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
CONNECT_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The shipped migrations, in version order."""
    found: list[Migration] = []
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two archive migrations share a version: {versions}")
    return found


async def connect(url: str) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection; a bad URL or an unreachable server raises psycopg.Error."""
    return await psycopg.AsyncConnection.connect(
        url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS,
        application_name="taskforge")


async def migrate(conn: psycopg.AsyncConnection[Any]) -> list[int]:
    """Apply the migrations not yet applied, each in its own transaction; their versions."""
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())")
        cur = await conn.execute("SELECT version FROM schema_migrations")
        applied = {int(row[0]) for row in await cur.fetchall()}
        done: list[int] = []
        for migration in migrations():
            if migration.version in applied:
                continue
            async with conn.transaction():
                # bytes: several statements in one simple query, and psycopg's typing
                # rightly refuses a str that is not a literal.
                await conn.execute(migration.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name))
            done.append(migration.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


RUN_COLUMNS = ("uid", "namespace", "name", "workflow", "workflow_generation", "phase",
               "trigger", "params", "outputs", "pinned_spec", "steps", "creator", "message",
               "created_at", "started_at", "finished_at", "conditions")
ATTEMPT_COLUMNS = ("run_uid", "step", "attempt", "job_name", "started_at", "finished_at",
                   "exit_code", "reason", "message", "outputs")
LOG_COLUMNS = ("run_uid", "step", "attempt", "pod", "size", "truncated", "note", "content")
JSON_COLUMNS = frozenset({"params", "outputs", "pinned_spec", "steps", "conditions"})


def _upsert(table: str, columns: Sequence[str], key: Sequence[str], where: str = "") -> bytes:
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    return (f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT"
            f" ({', '.join(key)}) DO UPDATE SET {updates}, archived_at = now()"
            f"{where}").encode()


_TABLES: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "run": (_upsert("archived_runs", RUN_COLUMNS, ("uid",)), RUN_COLUMNS),
    "attempt": (_upsert("archived_attempts", ATTEMPT_COLUMNS, ("run_uid", "step", "attempt")),
                ATTEMPT_COLUMNS),
    # A log read again later (a new leader's catch-up, a run failed around its attempts)
    # may find the pod gone: that row (a note, no text) never replaces one with the text.
    "log": (_upsert("archived_logs", LOG_COLUMNS, ("run_uid", "step", "attempt"),
                    " WHERE archived_logs.note IS NOT NULL OR EXCLUDED.note IS NULL"),
            LOG_COLUMNS),
}


_JSON_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def _dumps(value: Any) -> bytes:
    """JSON for a jsonb column by orjson (the stdlib's encoder was a good part of the
    writer's CPU), the stdlib's for what orjson refuses (integers past 64 bits). jsonb
    cannot hold U+0000, which a step's output may: it becomes U+FFFD."""
    try:
        data = orjson.dumps(value)
    except TypeError:
        data = json.dumps(value, separators=(",", ":")).encode()
    return _JSON_NUL.sub(rb"\1\\ufffd", data) if b"\\u0000" in data else data


def _value(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in JSON_COLUMNS:
        return Jsonb(value, dumps=_dumps)
    if isinstance(value, str) and "\x00" in value:  # text cannot hold NUL either
        return value.replace("\x00", "\ufffd")
    return value


def _row(columns: Sequence[str], values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(_value(c, values.get(c)) for c in columns)


async def write(conn: psycopg.AsyncConnection[Any],
                records: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Upsert a batch of (kind, columns) records in one transaction: all or none. One
    pipeline: BEGIN, the rows and COMMIT go out together and are answered together, one
    round trip (and one wait in the event loop) a batch instead of one a statement."""
    by_kind: dict[str, list[tuple[Any, ...]]] = {}
    for kind, values in records:
        by_kind.setdefault(kind, []).append(_row(_TABLES[kind][1], values))
    async with conn.pipeline(), conn.transaction(), conn.cursor() as cur:
        for kind in ("log", "attempt", "run"):
            rows = by_kind.get(kind)
            if rows:
                await cur.executemany(_TABLES[kind][0], rows)


REFUSED = (psycopg.DataError, psycopg.IntegrityError)
"""What the database answers about a record's content (a value it cannot store), as
against being unreachable: retrying that batch can never succeed."""


async def write_each(conn: psycopg.AsyncConnection[Any],
                     records: Sequence[tuple[str, dict[str, Any]]]
                     ) -> list[tuple[tuple[str, dict[str, Any]], str]]:
    """After a batch was refused for its content: write the records one by one; those the
    database refuses, with why (the caller drops and counts them, the rest are written)."""
    refused: list[tuple[tuple[str, dict[str, Any]], str]] = []
    for record in records:
        try:
            await write(conn, [record])
        except REFUSED as exc:
            refused.append((record, str(exc).strip().splitlines()[0] if str(exc).strip()
                            else type(exc).__name__))
    return refused


ORPHAN_DAYS_MIN = 7
"""Attempts and logs of runs that never ended in the archive (deleted while running) go
after this many days, or the retention's days if longer."""


async def enforce_retention(conn: psycopg.AsyncConnection[Any], retention: Retention) -> int:
    """Delete what retention no longer keeps; the number of runs deleted."""
    deleted: list[str] = []
    async with conn.transaction():
        if retention.days is not None:
            cur = await conn.execute(
                "DELETE FROM archived_runs WHERE finished_at < now() - make_interval(days => %s)"
                " RETURNING uid", (retention.days,))
            deleted += [str(r[0]) for r in await cur.fetchall()]
        if retention.runs_per_workflow is not None:
            cur = await conn.execute(
                "DELETE FROM archived_runs r USING ("
                " SELECT uid FROM (SELECT uid, row_number() OVER (PARTITION BY namespace,"
                " workflow ORDER BY finished_at DESC NULLS LAST, archived_at DESC) AS n"
                " FROM archived_runs) ranked WHERE n > %s) old"
                " WHERE r.uid = old.uid RETURNING r.uid", (retention.runs_per_workflow,))
            deleted += [str(r[0]) for r in await cur.fetchall()]
        if deleted:
            for table in ("archived_attempts", "archived_logs"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE run_uid = ANY(%s)".encode(), (deleted,))
        orphan_days = max(retention.days or 0, ORPHAN_DAYS_MIN)
        for table in ("archived_attempts", "archived_logs"):
            await conn.execute(
                f"DELETE FROM {table} t WHERE archived_at < now() - make_interval(days => %s)"
                " AND NOT EXISTS (SELECT 1 FROM archived_runs r WHERE r.uid = t.run_uid)"
                .encode(), (orphan_days,))
    return len(deleted)


async def archived_uids(conn: psycopg.AsyncConnection[Any], uids: Sequence[str]) -> set[str]:
    """Which of these runs the archive already holds (a new leader's catch-up)."""
    if not uids:
        return set()
    cur = await conn.execute("SELECT uid FROM archived_runs WHERE uid = ANY(%s)", (list(uids),))
    return {str(r[0]) for r in await cur.fetchall()}
