"""Live views over Server-Sent Events, fed by the hub's one watch per kind.

Each stream: the caller is authorized once at connect (`watch` on the resource, as the
caller), subscribes to the hub, then gets a snapshot (one read, with the server's identity)
and after it every change. Events the subscription queued before the snapshot are skipped
when their resourceVersion is not newer than what the snapshot showed, so a viewer never
goes back in time. A `: ping` comment every 15 s keeps proxies from closing an idle stream.
A run's stream also carries its Events (the hub's one Events watch), so its page needs no
second connection for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from taskforge.web import views
from taskforge.web.auth import ACCESS_KEY, Check, require
from taskforge.web.delta import DetailRenderer, live_detail
from taskforge.web.hub import RESET, RESYNC, Hub, Renderer, Update, resource_version, sse
from taskforge.web.reads import get_run, spec_of
from taskforge.web.state import KUBE_KEY, crd_path, name_arg

HUB_KEY = web.AppKey("taskforge_hub", Hub)
PING_SECONDS = 15.0
WRITE_TIMEOUT = 30.0


def renderers() -> dict[str, Renderer]:
    return {
        "summary": lambda kind, run: sse("run", {"type": kind, "run": views.run_summary(run)}),
        "detail": DetailRenderer(),
        "workflow": lambda kind, wf: sse("workflow", {"type": kind,
                                                      "workflow": views.workflow_summary(wf)}),
        "event": lambda kind, ev: sse("event", {"type": kind, "event": views.event_view(ev)}),
    }


Snapshot = Callable[[], Awaitable[tuple[bytes, dict[str, int]]]]


async def _stream(
    request: web.Request, *, plural: str, ns: str, shape: str,
    match: Callable[[dict[str, Any]], bool], snapshot: Snapshot,
    events: Callable[[dict[str, Any]], bool] | None = None,
) -> web.StreamResponse:
    """`events`: also send the namespace's Events it matches (`event` messages), from the
    hub's one Events watch."""
    hub = request.app[HUB_KEY]
    sub = hub.subscribe(plural, ns, shape, match)
    if events is not None:
        hub.also(sub, "events", ns, "event", events)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no"})
    try:
        data, seen = await snapshot()
        await response.prepare(request)
        await response.write(data)
        while True:
            try:
                msg = await asyncio.wait_for(sub.get(), PING_SECONDS)
            except TimeoutError:
                msg = b": ping\n\n"
            if msg == RESET:
                await response.write(sse("reset", {"reason": "this viewer fell behind"}))
                break
            if msg == RESYNC:
                data, seen = await snapshot()
            elif isinstance(msg, tuple):
                name, rv, update = msg
                had = seen.get(name, 0)
                if rv and rv <= had:
                    continue
                seen[name] = rv
                data = update.for_viewer(had) if isinstance(update, Update) else update
            else:
                data = msg
            async with asyncio.timeout(WRITE_TIMEOUT):
                await response.write(data)
    except (ConnectionResetError, TimeoutError):
        pass
    finally:
        hub.unsubscribe(plural, ns, sub)
    return response


async def live_runs(request: web.Request) -> web.StreamResponse:
    ns = name_arg(request, "ns")
    workflow = request.query.get("workflow") or None
    await require(request, Check("watch", "workflowruns", ns))
    kube = request.app[KUBE_KEY]

    def match(run: dict[str, Any]) -> bool:
        return ((run.get("metadata") or {}).get("namespace") == ns
                and (workflow is None or views.run_workflow(run) == workflow))

    async def snapshot() -> tuple[bytes, dict[str, int]]:
        listed = await kube.request("GET", crd_path(ns, "workflowruns"))
        runs = [r for r in listed.get("items") or [] if match(r)]
        seen = {str(r["metadata"]["name"]): resource_version(r) for r in runs}
        return sse("snapshot", {"items": [views.run_summary(r) for r in runs]}), seen

    return await _stream(request, plural="workflowruns", ns=ns, shape="summary", match=match,
                         snapshot=snapshot)


async def live_run(request: web.Request) -> web.StreamResponse:
    """One run's page. `?rv=`: the resourceVersion of the state the page already holds (the
    run page is served with it): when the run is still there, the snapshot is a `current`
    event instead of the whole detail again."""
    ns, name = name_arg(request, "ns"), name_arg(request, "name")
    user = await require(request, Check("watch", "workflowruns", ns))
    kube = request.app[KUBE_KEY]
    since = request.query.get("rv", "")
    # its Events too, live, for a caller who may watch them here (the page reads the ones
    # before it came with GET runs/{name}/events); without that right, the run alone
    sees_events = await request.app[ACCESS_KEY].allowed(user, Check("watch", "events", ns,
                                                                    group=""))
    first = True

    def match(run: dict[str, Any]) -> bool:
        meta = run.get("metadata") or {}
        return bool(meta.get("namespace") == ns and meta.get("name") == name)

    async def snapshot() -> tuple[bytes, dict[str, int]]:
        nonlocal first
        run = await get_run(kube, ns, name)  # a 404 before the stream starts
        rv = resource_version(run)
        spec = await spec_of(kube, run)  # the pinned one: no request
        renderer = request.app[HUB_KEY].renderers.get("detail")
        if isinstance(renderer, DetailRenderer):
            renderer.remember_spec(run, spec)
        current, first = first and since.isdigit() and rv > 0 and int(since) == rv, False
        if current:
            return sse("current", {"resourceVersion": str(rv)}), {name: rv}
        return sse("snapshot", live_detail(views.run_detail(run, spec))), {name: rv}

    return await _stream(request, plural="workflowruns", ns=ns, shape="detail", match=match,
                         snapshot=snapshot,
                         events=(lambda ev: views.event_of_run(ev, ns, name)) if sees_events
                         else None)


async def live_workflows(request: web.Request) -> web.StreamResponse:
    ns = name_arg(request, "ns")
    await require(request, Check("watch", "workflows", ns))
    kube = request.app[KUBE_KEY]

    def match(wf: dict[str, Any]) -> bool:
        return bool((wf.get("metadata") or {}).get("namespace") == ns)

    async def snapshot() -> tuple[bytes, dict[str, int]]:
        listed = await kube.request("GET", crd_path(ns, "workflows"))
        wfs = listed.get("items") or []
        seen = {str(w["metadata"]["name"]): resource_version(w) for w in wfs}
        return sse("snapshot", {"items": [views.workflow_summary(w) for w in wfs]}), seen

    return await _stream(request, plural="workflows", ns=ns, shape="workflow", match=match,
                         snapshot=snapshot)


def add_routes(app: web.Application) -> None:
    base = "/api/v1/namespaces/{ns}/live"
    app.router.add_get(f"{base}/runs", live_runs)
    app.router.add_get(f"{base}/runs/{{name}}", live_run)
    app.router.add_get(f"{base}/workflows", live_workflows)
