"""The read endpoints: workflows, runs (filtered, paged), one run, a step's logs, Events.

Each handler first asks RBAC (as the caller) for the verb and resource it reads, then reads
with the server's own identity: its ServiceAccount may read runs, workflows, pods, logs and
Events cluster-wide, and the SubjectAccessReview is what narrows that to the caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from aiohttp import web

from taskforge.engine.naming import LABEL_ATTEMPT, LABEL_RUN, LABEL_STEP, label_value
from taskforge.web import views
from taskforge.web.auth import Check, require
from taskforge.web.errors import ApiError
from taskforge.web.kubeapi import KubeApi, KubeError
from taskforge.web.state import KUBE_KEY, crd_path, name_arg, time_arg

MAX_LIMIT = 500
RUN_PHASES = ("Pending", "Waiting", "Running", "Succeeded", "Failed", "Cancelled")


async def get_run(kube: KubeApi, namespace: str, name: str) -> dict[str, Any]:
    return await _get(kube, namespace, "workflowruns", name)


async def get_workflow(kube: KubeApi, namespace: str, name: str) -> dict[str, Any]:
    return await _get(kube, namespace, "workflows", name)


async def _get(kube: KubeApi, namespace: str, plural: str, name: str) -> dict[str, Any]:
    """One object; a missing one is a 404 that names it (`workflowrun 'x' not found ...`)."""
    try:
        return await kube.request("GET", crd_path(namespace, plural, name))
    except KubeError as exc:
        if exc.status == 404:
            raise ApiError(404, f"{plural[:-1]} {name!r} not found in namespace"
                           f" {namespace!r}") from None
        raise


async def detail_of(kube: KubeApi, run: dict[str, Any]) -> dict[str, Any]:
    return views.run_detail(run, await spec_of(kube, run))


async def spec_of(kube: KubeApi, run: dict[str, Any]) -> dict[str, Any] | None:
    """The spec the run follows: pinned in it, else its Workflow's current one."""
    spec = views.followed_spec(run)
    if spec is None and (ref := views.run_workflow(run)):
        try:
            wf = await kube.request("GET", crd_path(run["metadata"]["namespace"], "workflows",
                                                     ref))
            spec = wf.get("spec")
        except KubeError:
            spec = None  # deleted since: the run is still worth showing
    return spec


async def list_workflows(request: web.Request) -> web.Response:
    ns = name_arg(request, "ns")
    await require(request, Check("list", "workflows", ns))
    kube = request.app[KUBE_KEY]
    wfs = await kube.request("GET", crd_path(ns, "workflows"))
    last: dict[str, dict[str, Any]] = {}
    try:
        await require(request, Check("list", "workflowruns", ns))
        runs = await kube.request("GET", crd_path(ns, "workflowruns"))
        for run in runs.get("items") or []:
            wf = views.run_workflow(run)
            created = (run.get("metadata") or {}).get("creationTimestamp") or ""
            if wf and created >= ((last.get(wf) or {}).get("metadata") or {}).get(
                    "creationTimestamp", ""):
                last[wf] = run
    except ApiError:
        pass  # may list workflows but not runs: no "last run" column
    items = [views.workflow_summary(w, last.get((w.get("metadata") or {}).get("name", "")))
             for w in wfs.get("items") or []]
    return web.json_response({"items": items})


async def read_workflow(request: web.Request) -> web.Response:
    ns, name = name_arg(request, "ns"), name_arg(request, "name")
    await require(request, Check("get", "workflows", ns))
    return web.json_response(await get_workflow(request.app[KUBE_KEY], ns, name))


def _time_arg(request: web.Request, key: str) -> str | None:
    when = time_arg(request.query.get(key), key)
    return views.iso(when) if when is not None else None


def _limit(request: web.Request, default: int = 50) -> int:
    raw = request.query.get("limit", str(default))
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(400, f"limit {raw!r} is not an integer", "limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit {limit} is out of range 1..{MAX_LIMIT}", "limit")
    return limit


def _fingerprint(ns: str, filters: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([ns, filters], sort_keys=True).encode()).hexdigest()[:16]


def encode_continue(api_token: str, fingerprint: str) -> str:
    raw = json.dumps({"c": api_token, "f": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str, fingerprint: str) -> str:
    """The API server's continue token inside ours; 400 if it is not one of ours or it was
    made for other filters (the API server would otherwise page a different list)."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        api_token, made_for = str(data["c"]), str(data["f"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ApiError(400, "continue is not a token this server gave out", "continue") from None
    if made_for != fingerprint:
        raise ApiError(400, "continue was given out for other filters: list again from the"
                       " start", "continue")
    return api_token


async def list_runs(request: web.Request) -> web.Response:
    ns = name_arg(request, "ns")
    q = request.query
    phases = [p for p in (q.get("phase") or "").split(",") if p]
    bad = [p for p in phases if p not in RUN_PHASES]
    if bad:
        raise ApiError(400, f"phase {bad[0]!r} is not one of {', '.join(RUN_PHASES)}", "phase")
    since, until = _time_arg(request, "since"), _time_arg(request, "until")
    workflow = q.get("workflow") or None
    limit = _limit(request)
    fp = _fingerprint(ns, {"p": phases, "s": since, "u": until, "w": workflow, "l": limit})
    query = {"limit": str(limit)}
    if q.get("continue"):
        query["continue"] = decode_continue(q["continue"], fp)
    await require(request, Check("list", "workflowruns", ns))
    try:
        page = await request.app[KUBE_KEY].request("GET", crd_path(ns, "workflowruns"),
                                                   query=query)
    except KubeError as exc:
        if exc.status == 410:
            raise ApiError(410, "the continue token expired: list again from the start",
                           "continue") from None
        raise
    # Runs started with kubectl carry no workflow label, so the workflow is matched here by
    # the run's workflowRef, like phase and time: a page may hold fewer than `limit` items.
    items = []
    for run in page.get("items") or []:
        s = views.run_summary(run)
        created = views.iso_of(s["created"])
        if (phases and s["phase"] not in phases) or (workflow and s["workflow"] != workflow):
            continue
        if (since and (created or "") < since) or (until and (created or "") > until):
            continue
        items.append(s)
    nxt = (page.get("metadata") or {}).get("continue")
    return web.json_response({"items": items,
                              "continue": encode_continue(nxt, fp) if nxt else None})


async def read_run(request: web.Request) -> web.Response:
    ns, name = name_arg(request, "ns"), name_arg(request, "name")
    await require(request, Check("get", "workflowruns", ns))
    kube = request.app[KUBE_KEY]
    return web.json_response(await detail_of(kube, await get_run(kube, ns, name)))


async def run_events(request: web.Request) -> web.Response:
    ns, name = name_arg(request, "ns"), name_arg(request, "name")
    await require(request, Check("get", "workflowruns", ns))
    await require(request, Check("list", "events", ns, group=""))
    kube = request.app[KUBE_KEY]
    await get_run(kube, ns, name)  # 404 for an unknown run, not an empty list
    # The run's own Events, and those of its Jobs and pods (named after the run).
    events = await kube.request("GET", f"/api/v1/namespaces/{ns}/events")
    mine = [e for e in events.get("items") or [] if views.event_of_run(e, ns, name)]
    items = sorted((views.event_view(e) for e in mine), key=lambda v: str(v["last"] or ""))
    return web.json_response({"items": items})


async def step_logs(request: web.Request) -> web.StreamResponse:
    ns, name = name_arg(request, "ns"), name_arg(request, "name")
    step = request.match_info["step"]
    await require(request, Check("get", "workflowruns", ns))
    await require(request, Check("get", "pods", ns, group="", subresource="log"))
    kube = request.app[KUBE_KEY]
    run = await get_run(kube, ns, name)
    steps = (run.get("status") or {}).get("steps")
    st = steps.get(step) if isinstance(steps, dict) else None
    if not isinstance(st, dict):
        raise ApiError(404, f"run {name!r} has no step {step!r} (or it has not started)", "step")
    raw_attempt = request.query.get("attempt") or str(st.get("attempts") or 1)
    if not raw_attempt.isdigit() or int(raw_attempt) < 1:
        raise ApiError(400, f"attempt {raw_attempt!r} is not a positive integer", "attempt")
    tail = request.query.get("tail") or ""
    if tail and not tail.isdigit():
        raise ApiError(400, f"tail {tail!r} is not a non-negative integer", "tail")
    selector = (f"{LABEL_RUN}={label_value(name)},{LABEL_STEP}={label_value(step)},"
                f"{LABEL_ATTEMPT}={raw_attempt}")
    pods = await kube.request("GET", f"/api/v1/namespaces/{ns}/pods",
                              query={"labelSelector": selector})
    found = [p for p in pods.get("items") or []
             if ((p.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN) == label_value(name)]
    if not found:
        raise ApiError(404, f"step {step!r} attempt {raw_attempt} of run {name!r} has no pod"
                       " (not started yet, or cleaned up)", "attempt")
    found.sort(key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
    pod = found[-1]["metadata"]["name"]
    follow = request.query.get("follow") in ("1", "true")
    query = {"follow": "true"} if follow else {}
    if tail:
        query["tailLines"] = tail
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8",
                                           "Cache-Control": "no-cache",
                                           "X-Content-Type-Options": "nosniff"})
    stream = kube.stream(f"/api/v1/namespaces/{ns}/pods/{pod}/log", query=query)
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        first = b""
    except KubeError as exc:
        if exc.status == 400:  # "container ... is waiting to start"
            raise ApiError(404, f"no logs yet: {exc.message}", "attempt") from None
        raise
    try:
        await response.prepare(request)
        await response.write(first)
        async for chunk in stream:
            await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the viewer left
    finally:
        await stream.aclose()  # ends the API server's follow now, not at garbage collection
    return response


def add_routes(app: web.Application) -> None:
    base = "/api/v1/namespaces/{ns}"
    app.router.add_get(f"{base}/workflows", list_workflows)
    app.router.add_get(f"{base}/workflows/{{name}}", read_workflow)
    app.router.add_get(f"{base}/runs", list_runs)
    app.router.add_get(f"{base}/runs/{{name}}", read_run)
    app.router.add_get(f"{base}/runs/{{name}}/events", run_events)
    app.router.add_get(f"{base}/runs/{{name}}/steps/{{step}}/logs", step_logs)
