"""Queries over the run archive, for every reader: the CLI and the HTTP API (issue 17).

The seam: `ArchiveReader(url)` as an async context manager, with `list_runs` (admin, any
namespaces), `list_page` (one namespace, keyset-paged), `find`, `same_name`, `get_run` and
`logs`, each returning JSON-ready dicts (camelCase keys, ISO times) and each scoped to the
namespaces the caller passes. Authorization is the caller's: the HTTP API
(taskforge.web.archive) passes only the namespace of the request, after a
SubjectAccessReview of list/get `workflowruns` there (and get `pods/log` for logs), as it
does for live runs; the CLI's direct read (`--archive-url`) is an admin path, since whoever
holds the URL's password reads every namespace.

Only psycopg and the standard library here, so the base CLI install can use it.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import psycopg
from psycopg.rows import dict_row

SUMMARY_COLUMNS = ("uid", "namespace", "name", "workflow", "workflow_generation", "phase",
                   "trigger", "creator", "message", "created_at", "started_at", "finished_at",
                   "archived_at")
MAX_LIST = 10_000
Cursor = tuple[datetime | None, str]
"""Where a page ends: the last run's exact finished_at and its uid."""
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


def _filters(namespaces: Sequence[str] | None, workflow: str | None,
             phases: Sequence[str]) -> tuple[list[str], list[Any]]:
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
    return where, args


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
        `before`: only runs finished before it."""
        where, args = _filters(namespaces, workflow, phases)
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

    async def list_page(
        self, namespace: str, *, workflow: str | None = None, phases: Sequence[str] = (),
        since: datetime | None = None, until: datetime | None = None, limit: int = 50,
        after: Cursor | None = None,
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        """One page of a namespace's runs, newest finished first, and the cursor of the next
        page (None: this was the last). Keyset paging on (finished_at, uid), exact to the
        microsecond, so runs that finished at the same instant are neither skipped nor
        repeated across pages. `since`/`until`: finished at or after / before."""
        where, args = _filters([namespace], workflow, phases)
        if since is not None:
            where.append("finished_at >= %s")
            args.append(since)
        if until is not None:
            where.append("finished_at < %s")
            args.append(until)
        if after is not None:
            when, uid = after
            if when is None:
                where.append("(finished_at IS NULL AND uid < %s)")
                args.append(uid)
            else:
                where.append("(finished_at < %s OR (finished_at = %s AND uid < %s)"
                             " OR finished_at IS NULL)")
                args += [when, when, uid]
        limit = max(1, min(limit, MAX_LIST))
        query = (f"SELECT coalesce(json_agg(t), '[]'::json) AS items FROM ("
                 f"SELECT {', '.join(map(_select, SUMMARY_COLUMNS))},"
                 " to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
                 " AS \"_key\" FROM archived_runs WHERE " + " AND ".join(where)
                 + " ORDER BY finished_at DESC NULLS LAST, uid DESC LIMIT %s) t")
        args.append(limit + 1)
        cur = await self.conn.execute(query.encode(), args)
        row = await cur.fetchone()
        items: list[dict[str, Any]] = list(row["items"]) if row is not None else []
        more = len(items) > limit
        items = items[:limit]
        keys = [item.pop("_key") for item in items]
        if not more or not items:
            return items, None
        last = keys[-1]
        return items, (None if last is None else
                       datetime.fromisoformat(last).replace(tzinfo=UTC), items[-1]["uid"])

    async def find(self, namespace: str, name: str,
                   uid: str | None = None) -> dict[str, Any] | None:
        """The summary of the newest archived run of that name (or the one with `uid`) in
        the namespace; None when the archive has no such run there."""
        cur = await self.conn.execute(
            (f"SELECT {', '.join(map(_select, SUMMARY_COLUMNS))} FROM archived_runs"
             " WHERE namespace = %s AND name = %s AND (%s::text IS NULL OR uid = %s)"
             " ORDER BY finished_at DESC NULLS LAST, uid DESC LIMIT 1").encode(),
            (namespace, name, uid, uid))
        row = await cur.fetchone()
        return dict(row) if row is not None else None

    async def same_name(self, namespace: str, name: str,
                        limit: int = 100) -> list[dict[str, Any]]:
        """Every archived run of that name in the namespace (a name is reused once a run is
        deleted), newest first: uid, phase and times, to choose one by uid."""
        cur = await self.conn.execute(
            (f"SELECT {', '.join(map(_select, ('uid', 'phase', 'started_at', 'finished_at')))}"
             " FROM archived_runs WHERE namespace = %s AND name = %s"
             " ORDER BY finished_at DESC NULLS LAST, uid DESC LIMIT %s").encode(),
            (namespace, name, limit))
        return [dict(r) for r in await cur.fetchall()]

    async def get_run(self, namespace: str, name: str,
                      uid: str | None = None) -> dict[str, Any] | None:
        """The newest archived run of that name (or the one with `uid`), whole, with its
        attempts (oldest first)."""
        cur = await self.conn.execute(
            "SELECT * FROM archived_runs WHERE namespace = %s AND name = %s"
            " AND (%s::text IS NULL OR uid = %s)"
            " ORDER BY finished_at DESC NULLS LAST, uid DESC LIMIT 1",
            (namespace, name, uid, uid))
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
                   attempt: int | None = None, *, uid: str | None = None,
                   max_bytes: int | None = None) -> list[dict[str, Any]]:
        """The archived logs of the newest run of that name (or the one with `uid`): per
        step attempt, `text` (decompressed), `truncated` (the head was cut to keep the last
        1 MiB), `note` (why there is no log). Latest attempt of each step unless `attempt`
        is given. `max_bytes` bounds one answer: once the logs before an entry hold that
        much, its text is left out (`omitted`: ask for its step alone)."""
        found = await self.find(namespace, name, uid)
        if found is None:
            return []
        where, args = ["l.run_uid = %s"], [found["uid"]]
        if step is not None:
            where.append("l.step = %s")
            args.append(step)
        if attempt is not None:
            where.append("l.attempt = %s")
            args.append(attempt)
        else:
            where.append("l.attempt = (SELECT max(m.attempt) FROM archived_logs m"
                         " WHERE m.run_uid = l.run_uid AND m.step = l.step)")
        order = "a.started_at NULLS LAST, l.step, l.attempt"
        # The sizes before each row, summed by PostgreSQL: a row past the budget never
        # sends its content, so a run of 1,000 steps cannot make a 1 GiB answer.
        budget = (f"sum(coalesce(l.size, 0)) OVER (ORDER BY {order} ROWS BETWEEN"
                  " UNBOUNDED PRECEDING AND 1 PRECEDING)")
        keep = "true" if max_bytes is None else f"coalesce({budget}, 0) < %s"
        cur = await self.conn.execute(
            ("SELECT l.step, l.attempt, l.pod, l.size, l.truncated, l.note,"
             f" CASE WHEN {keep} THEN l.content END AS content, ({keep}) AS kept,"
             " a.started_at FROM archived_logs l LEFT JOIN archived_attempts a"
             " ON a.run_uid = l.run_uid AND a.step = l.step AND a.attempt = l.attempt"
             f" WHERE {' AND '.join(where)} ORDER BY {order}").encode(),
            ([max_bytes, max_bytes] if max_bytes is not None else []) + args)
        out = []
        for r in await cur.fetchall():
            content = r.pop("content")
            kept = r.pop("kept")
            r["text"] = (gzip.decompress(content).decode("utf-8", errors="replace")
                         if content is not None else "")
            if not kept:
                r["omitted"] = True
            out.append(_json(r))
        return out
