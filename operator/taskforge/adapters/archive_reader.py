"""Queries over the run archive, for every reader: the CLI and the HTTP API (issue 17).

The seam: `ArchiveReader(url)` as an async context manager, with `list_runs`, `get_run`
and `logs`, each returning JSON-ready dicts (camelCase keys, ISO times) and each scoped to
the namespaces the caller passes. Authorization is the caller's: the HTTP API passes only
namespaces where the user may list/get `workflowruns` (and get `pods/log` for logs), as it
does for live runs; the CLI's direct read (`--archive-url`) is an admin path, since whoever
holds the URL's password reads every namespace.

Only psycopg and the standard library here, so the base CLI install can use it.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import psycopg
from psycopg.rows import dict_row

SUMMARY_COLUMNS = ("uid", "namespace", "name", "workflow", "workflow_generation", "phase",
                   "trigger", "creator", "message", "created_at", "started_at", "finished_at",
                   "archived_at")
MAX_LIST = 10_000
_ISO = "YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\""


def _select(column: str) -> str:
    """The column as its JSON key, times as ISO text: PostgreSQL shapes the rows, so a list
    of 10,000 needs no per-value work in Python (that was most of its time)."""
    alias = _camel(column)
    if column.endswith("_at"):
        return f"to_char({column} AT TIME ZONE 'UTC', '{_ISO}') AS \"{alias}\""
    return f"{column} AS \"{alias}\"" if alias != column else column


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _json(row: dict[str, Any]) -> dict[str, Any]:
    return {_camel(k): (v.isoformat().replace("+00:00", "Z") if isinstance(v, datetime) else v)
            for k, v in row.items()}


class ArchiveReader:
    """Read-only access to the archive; one connection for the reader's lifetime."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None

    async def __aenter__(self) -> ArchiveReader:
        self._conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=5, row_factory=dict_row,
            application_name="taskforge-reader")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def conn(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is None:
            raise RuntimeError("ArchiveReader is used outside `async with`")
        return self._conn

    async def list_runs(
        self, namespaces: Sequence[str] | None, *, workflow: str | None = None,
        phases: Sequence[str] = (), limit: int = 50, before: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Run summaries, newest finished first. `namespaces` None: every namespace (admin);
        `before`: only runs finished before it (the next page)."""
        where: list[str] = []
        args: list[Any] = []
        if namespaces is not None and len(namespaces) == 1:
            where.append("namespace = %s")  # an index scan in finish order, unlike ANY()
            args.append(namespaces[0])
        elif namespaces is not None:
            where.append("namespace = ANY(%s)")
            args.append(list(namespaces))
        if workflow:
            where.append("workflow = %s")
            args.append(workflow)
        if phases:
            where.append("phase = ANY(%s)")
            args.append(list(phases))
        if before is not None:
            where.append("finished_at < %s")
            args.append(before)
        # One JSON array from the server: psycopg parses it in one json.loads (C) instead of
        # building 10,000 row dicts in Python.
        query = (f"SELECT coalesce(json_agg(t), '[]'::json) AS items FROM ("
                 f"SELECT {', '.join(map(_select, SUMMARY_COLUMNS))} FROM archived_runs"
                 f"{' WHERE ' + ' AND '.join(where) if where else ''}"
                 " ORDER BY finished_at DESC NULLS LAST LIMIT %s) t")
        args.append(max(1, min(limit, MAX_LIST)))
        cur = await self.conn.execute(query.encode(), args)
        row = await cur.fetchone()
        return list(row["items"]) if row is not None else []

    async def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The newest archived run of that name, whole, with its attempts (oldest first)."""
        cur = await self.conn.execute(
            "SELECT * FROM archived_runs WHERE namespace = %s AND name = %s"
            " ORDER BY finished_at DESC NULLS LAST LIMIT 1", (namespace, name))
        row = await cur.fetchone()
        if row is None:
            return None
        cur = await self.conn.execute(
            "SELECT a.step, a.attempt, a.job_name, a.started_at, a.finished_at, a.exit_code,"
            " a.reason, a.message, a.outputs, l.size AS log_size, l.truncated AS log_truncated,"
            " l.note AS log_note FROM archived_attempts a LEFT JOIN archived_logs l"
            " ON l.run_uid = a.run_uid AND l.step = a.step AND l.attempt = a.attempt"
            " WHERE a.run_uid = %s ORDER BY a.started_at NULLS LAST, a.step, a.attempt",
            (row["uid"],))
        run = _json(row)
        run["attempts"] = [_json(a) for a in await cur.fetchall()]
        return run

    async def logs(self, namespace: str, name: str, step: str | None = None,
                   attempt: int | None = None) -> list[dict[str, Any]]:
        """The archived logs of the newest run of that name: per step attempt, `text`
        (decompressed), `truncated` (the head was cut to keep the last 1 MiB), `note`
        (why there is no log). Latest attempt of each step unless `attempt` is given."""
        cur = await self.conn.execute(
            "SELECT uid FROM archived_runs WHERE namespace = %s AND name = %s"
            " ORDER BY finished_at DESC NULLS LAST LIMIT 1", (namespace, name))
        row = await cur.fetchone()
        if row is None:
            return []
        where, args = ["l.run_uid = %s"], [row["uid"]]
        if step is not None:
            where.append("l.step = %s")
            args.append(step)
        if attempt is not None:
            where.append("l.attempt = %s")
            args.append(attempt)
        else:
            where.append("l.attempt = (SELECT max(m.attempt) FROM archived_logs m"
                         " WHERE m.run_uid = l.run_uid AND m.step = l.step)")
        cur = await self.conn.execute(
            ("SELECT l.step, l.attempt, l.pod, l.size, l.truncated, l.note, l.content,"
             " a.started_at FROM archived_logs l LEFT JOIN archived_attempts a"
             " ON a.run_uid = l.run_uid AND a.step = l.step AND a.attempt = l.attempt"
             f" WHERE {' AND '.join(where)} ORDER BY a.started_at NULLS LAST, l.step").encode(),
            args)
        out = []
        for r in await cur.fetchall():
            content = r.pop("content")
            r["text"] = gzip.decompress(content).decode("utf-8", errors="replace")
            out.append(_json(r))
        return out
