"""Dead letters of one namespace over HTTP: list, show, replay, purge.

RBAC has no resource for them, so they map onto `workflowruns` in their namespace, the
objects they come from (README, "Web UI and API"):

* list and show: `list workflowruns` (whoever may list a namespace's runs sees why they failed)
* replay: `create workflowruns` (it creates a run, with the caller's own token)
* purge (one, or all with `?all=true`): `delete workflowruns` (it destroys run history)

Each namespace has its own stream (adapters/deadletter.py), so a request can only ever reach
the records of the namespace it was authorized for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from taskforge.adapters.deadletter import BadIdError, DeadLetterEntry, DeadLetterStream
from taskforge.adapters.redis_client import RedisCallError, RedisConnection
from taskforge.engine.naming import label_value
from taskforge.engine.rerun import LABEL_REPLAY_OF, run_manifest
from taskforge.web import views
from taskforge.web.actions import create_run
from taskforge.web.auth import Check, require
from taskforge.web.errors import ApiError
from taskforge.web.kubeapi import KubeError
from taskforge.web.reads import MAX_LIMIT, get_workflow
from taskforge.web.state import KUBE_KEY, crd_path, name_arg


@dataclass
class DeadLetterBackend:
    conn: RedisConnection | None

    def stream(self, namespace: str) -> DeadLetterStream:
        if self.conn is None:
            raise ApiError(503, "dead letters are not available: this server has no Redis"
                           " (REDIS_URL)")
        return DeadLetterStream(self.conn, namespace)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.aclose()


DLQ_KEY = web.AppKey("taskforge_dlq", DeadLetterBackend)


def entry_view(e: DeadLetterEntry) -> dict[str, Any]:
    return {"id": e.stream_id, "record": e.id, "workflow": e.workflow or None,
            "namespace": e.namespace, "run": e.run, "step": e.step, "params": e.params,
            "error": e.error, "attempts": e.attempts, "failedAt": e.failed_at,
            "shippedAt": e.shipped_at, "replayedAs": e.replayed_as, "replayedAt": e.replayed_at}


async def _call(what: Any, field: str = "id") -> Any:
    try:
        return await what
    except BadIdError as exc:
        raise ApiError(400, str(exc), field) from None
    except RedisCallError as exc:
        raise ApiError(503, f"dead letters are unavailable: {exc}") from None


def _missing(stream_id: str, ns: str) -> ApiError:
    """404 for an id with no entry. Records kept before dead letters were split by namespace
    got new ids when they moved (adapters/deadletter.migrate_legacy), so an id noted back
    then names nothing now: say so, rather than only "not found"."""
    return ApiError(404, f"no dead-letter entry {stream_id!r} in namespace {ns!r} (it was"
                    " purged, trimmed, or it is an id from before dead letters were kept per"
                    " namespace: those records got new ids when they moved; list them to see"
                    " the current ones)", "id")


async def _entry(stream: DeadLetterStream, stream_id: str) -> DeadLetterEntry:
    entry: DeadLetterEntry | None = await _call(stream.show(stream_id))
    if entry is None:
        raise _missing(stream_id, stream.namespace)
    return entry


async def list_letters(request: web.Request) -> web.Response:
    ns = name_arg(request, "ns")
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, f"limit {raw!r} is not an integer in 1..{MAX_LIMIT}", "limit")
    limit = int(raw)
    await require(request, Check("list", "workflowruns", ns))
    stream = request.app[DLQ_KEY].stream(ns)
    before = request.query.get("before") or request.query.get("continue") or None
    entries: list[DeadLetterEntry] = await _call(stream.list(count=limit, before=before),
                                                 "before")
    full = len(entries) == limit
    workflow, run = request.query.get("workflow"), request.query.get("run")
    items = [entry_view(e) for e in entries
             if (not workflow or e.workflow == workflow) and (not run or e.run == run)]
    return web.json_response({"items": items,
                              "continue": entries[-1].stream_id if full else None})


async def show_letter(request: web.Request) -> web.Response:
    ns = name_arg(request, "ns")
    await require(request, Check("list", "workflowruns", ns))
    entry = await _entry(request.app[DLQ_KEY].stream(ns), request.match_info["id"])
    return web.json_response(entry_view(entry))


async def replay_letter(request: web.Request) -> web.Response:
    ns = name_arg(request, "ns")
    user = await require(request, Check("create", "workflowruns", ns))
    stream = request.app[DLQ_KEY].stream(ns)
    entry = await _entry(stream, request.match_info["id"])
    kube = request.app[KUBE_KEY]
    if entry.workflow:
        await get_workflow(kube, ns, entry.workflow)  # a clear 404 if it is gone
        source: dict[str, Any] = {"workflowRef": {"name": entry.workflow}}
    else:
        try:
            old = await kube.request("GET", crd_path(ns, "workflowruns", entry.run))
            inline = (old.get("spec") or {}).get("workflowSpec")
        except KubeError:
            inline = None
        if not inline:
            raise ApiError(409, f"entry {entry.stream_id} has an inline workflow and run"
                           f" {entry.run!r} (which held it) is gone: nothing to replay")
        source = {"workflowSpec": inline}
    manifest = run_manifest(
        workflow=entry.workflow or entry.run, name=None, source=source,
        params=entry.params if isinstance(entry.params, dict) else None, trigger="replay",
        labels={LABEL_REPLAY_OF: label_value(entry.run)} if entry.run else None,
    )
    created = await create_run(request, user, ns, manifest)
    new = created["metadata"]["name"]
    await _call(stream.mark_replayed(entry.stream_id, new))
    entry = await _entry(stream, entry.stream_id)
    return web.json_response({"run": views.run_summary(created), "deadLetter": entry_view(entry)},
                             status=201)


async def purge_letter(request: web.Request) -> web.Response:
    ns = name_arg(request, "ns")
    await require(request, Check("delete", "workflowruns", ns))
    stream = request.app[DLQ_KEY].stream(ns)
    stream_id = request.match_info["id"]
    removed: int = await _call(stream.purge(stream_id))
    if not removed:
        raise _missing(stream_id, ns)
    return web.json_response({"purged": removed})


async def purge_all(request: web.Request) -> web.Response:
    ns = name_arg(request, "ns")
    if request.query.get("all") != "true":
        raise ApiError(400, "purging every entry of a namespace needs ?all=true", "all")
    await require(request, Check("delete", "workflowruns", ns))
    removed: int = await _call(request.app[DLQ_KEY].stream(ns).purge_all())
    return web.json_response({"purged": removed})


def add_routes(app: web.Application) -> None:
    base = "/api/v1/namespaces/{ns}/deadletters"
    app.router.add_get(base, list_letters)
    app.router.add_delete(base, purge_all)
    app.router.add_get(f"{base}/{{id}}", show_letter)
    app.router.add_delete(f"{base}/{{id}}", purge_letter)
    app.router.add_post(f"{base}/{{id}}/replay", replay_letter)
