"""The run archive over HTTP (issue 18 item 3): archived runs of a namespace, one archived run
with its attempts, and archived logs, with the same per-namespace authorization as live runs.

The queries are the CLI's (taskforge.adapters.archive_reader); the archive's URL is the
operator's variable, TASKFORGE_ARCHIVE_URL (the chart gives the UI Deployment the same
Secret). Without it every endpoint answers 501 "the run archive is not configured".

RBAC has no resource for archived runs, so they map onto `workflowruns` in their namespace,
the objects they were (README, "The HTTP API and its authorization"; docs/archive.md):

* list archived runs: `list workflowruns`
* one archived run (by name, or by `?uid=` when a name was used by several runs): `get
  workflowruns`
* archived logs: `get workflowruns` and `get pods/log`, as live logs ask

Every query is scoped to the one namespace of the path, the one the review was made for:
nothing of another namespace can be read, whatever name or uid is asked for (a uid of
another namespace's run is a 404, as an unknown one).

Paging is keyset on (finished_at, uid): `continue` is an opaque token of this server, bound
to the filters it was made for (another filter's token, or a forged one, is a 400).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from aiohttp import web

from taskforge.adapters.archive_reader import ArchiveReader, Cursor
from taskforge.web.auth import Check, require
from taskforge.web.errors import ApiError
from taskforge.web.reads import MAX_LIMIT
from taskforge.web.state import name_arg, time_arg

log = logging.getLogger("taskforge.web")

ARCHIVE_ENV = "TASKFORGE_ARCHIVE_URL"
ARCHIVED_PHASES = ("Succeeded", "Failed", "Cancelled")
MAX_CONNECTIONS = 8
"""Concurrent archive queries per server (one connection each): a burst of page loads waits
here instead of exhausting the database's connections."""
LOGS_MAX_BYTES = 16 << 20
"""One JSON logs answer holds at most this much log text; the rest is marked `omitted`
(asked for by step, each attempt's log is at most 1 MiB)."""
_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_STEP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


@dataclass
class ArchiveBackend:
    """The archive's URL, or None (not configured); one connection per request, at most
    MAX_CONNECTIONS at once (psycopg's pool is not a dependency, and a request is short)."""

    url: str | None
    _slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONNECTIONS))

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[ArchiveReader]:
        if self.url is None:
            raise ApiError(501, "the run archive is not configured on this server"
                           f" ({ARCHIVE_ENV} is not set; docs/archive.md)")
        async with self._slots:
            try:
                async with ArchiveReader(self.url) as reader:
                    yield reader
            except psycopg.Error as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning("run archive: %s", first)
                raise ApiError(503, f"the run archive is unavailable: {first}") from None


ARCHIVE_KEY = web.AppKey("taskforge_archive", ArchiveBackend)


def backend_from_env() -> ArchiveBackend:
    url = os.environ.get(ARCHIVE_ENV, "").strip() or None
    if url is None:
        log.info("%s is not set: the archive endpoints answer 501", ARCHIVE_ENV)
    return ArchiveBackend(url)


# --- input ---------------------------------------------------------------------------


def phases_arg(raw: str | None) -> list[str]:
    phases = [p for p in (raw or "").split(",") if p]
    bad = [p for p in phases if p not in ARCHIVED_PHASES]
    if bad:
        raise ApiError(400, f"phase {bad[0]!r} is not one of {', '.join(ARCHIVED_PHASES)}"
                       " (the archive holds finished runs)", "phase")
    return phases


def limit_arg(raw: str | None, default: int = 50) -> int:
    text = raw if raw is not None else str(default)
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, f"limit {text!r} is not an integer in 1..{MAX_LIMIT}", "limit")
    return int(text)


def uid_arg(raw: str | None) -> str | None:
    if not raw:
        return None
    if not _UID.match(raw):
        raise ApiError(400, f"uid {raw[:80]!r} is not a run uid", "uid")
    return raw


def attempt_arg(raw: str | None) -> int | None:
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 1_000_000:
        raise ApiError(400, f"attempt {raw[:20]!r} is not a positive integer", "attempt")
    return int(raw)


def workflow_arg(raw: str | None) -> str | None:
    if not raw:
        return None
    if not _NAME.match(raw):
        raise ApiError(400, f"workflow {raw[:80]!r} is not a valid Kubernetes name", "workflow")
    return raw


def step_arg(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not _STEP.match(raw):
        raise ApiError(400, f"step {raw[:80]!r} is not a step name", "step")
    return raw


def fingerprint(namespace: str, filters: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([namespace, filters], sort_keys=True,
                                     default=str).encode()).hexdigest()[:16]


def encode_cursor(cursor: Cursor, made_for: str) -> str:
    when, uid = cursor
    raw = json.dumps({"t": when.isoformat() if when else None, "u": uid, "f": made_for})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str, made_for: str) -> Cursor:
    """The page's cursor; 400 if the token is not one of ours or was made for other filters."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        when = data["t"]
        uid, fp = str(data["u"]), str(data["f"])
        at = None if when is None else datetime.fromisoformat(str(when))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ApiError(400, "continue is not a token this server gave out", "continue") from None
    if fp != made_for:
        raise ApiError(400, "continue was given out for other filters: list again from the"
                       " start", "continue")
    if at is not None and at.tzinfo is None:
        raise ApiError(400, "continue is not a token this server gave out", "continue")
    return at, uid


# --- handlers ------------------------------------------------------------------------


async def list_archived(request: web.Request) -> web.Response:
    ns = name_arg(request, "ns")
    q = request.query
    phases = phases_arg(q.get("phase"))
    since, until = time_arg(q.get("since"), "since"), time_arg(q.get("until"), "until")
    workflow = workflow_arg(q.get("workflow"))
    limit = limit_arg(q.get("limit"))
    fp = fingerprint(ns, {"p": phases, "s": since, "u": until, "w": workflow, "l": limit})
    after = decode_cursor(q["continue"], fp) if q.get("continue") else None
    await require(request, Check("list", "workflowruns", ns))
    async with request.app[ARCHIVE_KEY].reader() as reader:
        items, nxt = await reader.list_page(ns, workflow=workflow, phases=phases, since=since,
                                            until=until, limit=limit, after=after)
    return web.json_response({"items": items,
                              "continue": encode_cursor(nxt, fp) if nxt else None})


def _not_archived(ns: str, name: str, uid: str | None) -> ApiError:
    which = f" with uid {uid!r}" if uid else ""
    return ApiError(404, f"no archived run {name!r}{which} in namespace {ns!r}", "name")


async def read_archived(request: web.Request) -> web.Response:
    ns, name = name_arg(request, "ns"), name_arg(request, "name")
    uid = uid_arg(request.query.get("uid"))
    await require(request, Check("get", "workflowruns", ns))
    async with request.app[ARCHIVE_KEY].reader() as reader:
        run = await reader.get_run(ns, name, uid)
        if run is None:
            raise _not_archived(ns, name, uid)
        run["sameName"] = await reader.same_name(ns, name)
    return web.json_response(run)


async def _logs(request: web.Request, step: str | None,
                max_bytes: int | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ns, name = name_arg(request, "ns"), name_arg(request, "name")
    uid = uid_arg(request.query.get("uid"))
    attempt = attempt_arg(request.query.get("attempt"))
    await require(request, Check("get", "workflowruns", ns))
    await require(request, Check("get", "pods", ns, group="", subresource="log"))
    async with request.app[ARCHIVE_KEY].reader() as reader:
        run = await reader.find(ns, name, uid)
        if run is None:
            raise _not_archived(ns, name, uid)
        items = await reader.logs(ns, name, step, attempt, uid=run["uid"], max_bytes=max_bytes)
    if step is not None and not items:
        what = f"attempt {attempt} of step {step!r}" if attempt else f"step {step!r}"
        raise ApiError(404, f"archived run {name!r} has no log of {what}", "step")
    return run, items


async def archived_logs(request: web.Request) -> web.Response:
    """JSON: each step's latest attempt (or `?step=`, `?attempt=`), its text and notes."""
    step = step_arg(request.query.get("step") or None)
    run, items = await _logs(request, step, LOGS_MAX_BYTES)
    return web.json_response({"run": {k: run[k] for k in ("namespace", "name", "uid",
                                                            "phase", "finishedAt")},
                              "items": items})


async def archived_step_log(request: web.Request) -> web.Response:
    """One step attempt's archived log as plain text (the live endpoint's shape)."""
    step = step_arg(request.match_info["step"])
    _, items = await _logs(request, step, None)
    entry = items[-1]
    text = entry["text"] or (f"({entry['note']})\n" if entry.get("note") else "")
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff",
                                 "X-Taskforge-Attempt": str(entry["attempt"]),
                                 "X-Taskforge-Truncated": str(bool(entry.get("truncated")))
                                 .lower()})


def add_routes(app: web.Application) -> None:
    if ARCHIVE_KEY not in app:
        app[ARCHIVE_KEY] = backend_from_env()
    base = "/api/v1/namespaces/{ns}/archive/runs"
    app.router.add_get(base, list_archived)
    app.router.add_get(f"{base}/{{name}}", read_archived)
    app.router.add_get(f"{base}/{{name}}/logs", archived_logs)
    app.router.add_get(f"{base}/{{name}}/steps/{{step}}/logs", archived_step_log)
