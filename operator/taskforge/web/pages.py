"""The web UI's pages: server-rendered Jinja2 shells, one small script, no build step.

Why templates and hand-written JavaScript rather than an npm bundle: the UI is a handful of
tables, a form and a graph, all fed by the JSON API and its Server-Sent Events. Jinja2 is
already a dependency; `ui/static/app.js` is one file of plain browser JavaScript (fetch,
EventSource, DOM), so there is nothing to build, nothing to audit in a node_modules tree, no
CDN (there is no internet at run time) and the assets ship in the wheel as package data, so
in the image too. A page is a few KiB and needs no framework to start.

The pages are shells naming their namespace and object, and the script reads everything
through `/api/v1`, whose every call is checked by RBAC as the caller. One exception, for
speed: a run page comes with the run's state (what its live stream would send first, read
after the same `get workflowruns` check) and its graph drawn and coloured, so a 1,000-step
run draws without waiting for the script, the stream and its snapshot. Buttons are shown
only when `/api/v1/namespaces/{ns}/permissions` allows them, and the API checks again
anyway. The one computation here is the step graph's layout (`graph.py`, pure and tested):
drawn into the run page, or as SVG for names and edges the page posts when its graph
changes shape.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import orjson
from aiohttp import ClientError, web
from markupsafe import Markup, escape

from taskforge.web import graph, views
from taskforge.web.auth import ACCESS_KEY, Check, LocalAccess, User, current_user, require_user
from taskforge.web.delta import live_detail
from taskforge.web.errors import ApiError, json_body
from taskforge.web.kubeapi import KubeError
from taskforge.web.reads import get_run, spec_of
from taskforge.web.state import KUBE_KEY

UI = Path(__file__).resolve().parent / "ui"
STATIC = UI / "static"
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Cancelled")
# Kubernetes names (DNS-1123 labels/subdomains): anything else is refused before rendering.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
MAX_GRAPH_STEPS = 5_000
MAX_GRAPH_EDGES = 50_000
MAX_STEP_NAME = 253
MAX_ARROWS = 300
_PHASE = re.compile(r"^[A-Za-z]{1,32}$")  # a phase becomes a class name: letters only

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(UI / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _asset_versions() -> dict[str, str]:
    """A content hash per static file, so browsers may cache them and still see a new one."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
            for p in STATIC.iterdir() if p.is_file()}


_VERSIONS = _asset_versions()
_env.globals["static"] = lambda name: f"/static/{name}?v={_VERSIONS.get(name, '0')}"


def render(template: str, **context: Any) -> str:
    """Render one template (pure: a dict in, HTML out; the unit tests call this)."""
    return _env.get_template(template).render(**context)


def _label(name: str, width: int = 21) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def render_graph(steps: list[str], edges: list[list[str]], final: list[str],
                 phases: Mapping[str, str] | None = None) -> str:
    """The step graph as an SVG fragment (pure: names in, markup out)."""
    return _svg(graph.layout(steps, edges, final), phases)


def _svg(g: graph.Layout, phases: Mapping[str, str] | None) -> str:
    """The laid-out graph as SVG, each node in its phase from `phases` (else Pending, until
    the page colours it).

    Built by joining strings (every name escaped) rather than through a template: for a
    1,000-step run that is several times faster than Jinja's loop, and it is the one large
    piece of markup the server makes."""
    w, h = g.node_w, g.node_h
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{g.width}"'
           f' height="{g.height}" viewBox="0 0 {g.width} {g.height}" role="group"'
           ' aria-label="Steps graph"><defs><marker id="arrow" viewBox="0 0 8 8" refX="8"'
           ' refY="4" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z"'
           ' class="arrowhead"/></marker></defs><g class="edges">']
    # Edges always run left to right, so arrowheads only help a small graph; on a big one
    # they are most of the browser's paint time (a marker per path), and one path of all
    # the edges draws the same as one element per edge, which the browser would otherwise
    # parse and lay out 2,000 of for a 1,000-step run.
    if len(g.edges) <= MAX_ARROWS:
        out += [f'<path d="{e.path}" marker-end="url(#arrow)"/>' for e in g.edges]
    elif g.edges:
        out.append(f'<path d="{" ".join(e.path for e in g.edges)}"/>')
    out.append("</g>")
    for n in g.nodes:
        name = escape(n.name)
        final_class = " final" if n.final else ""
        phase = "Pending"
        drawn = ""
        if phases is not None:
            given = phases.get(n.name, "Pending")
            phase = given if _PHASE.match(given) else "Pending"
            drawn = f' data-phase="{phase}"'
        label = _label(n.name)
        # the whole name as a tooltip only where the label cuts it (fewer elements to parse)
        title = f"<title>{name}</title>" if label != n.name else ""
        out.append(f'<a href="#step-{name}" class="node phase-{phase}{final_class}"'
                   f' data-step="{name}"{drawn}>{title}<rect x="{n.x}" y="{n.y}"'
                   f' width="{w}" height="{h}" rx="6"/><text x="{n.x + 10}" y="{n.y + 25}">'
                   f"{escape(label)}</text></a>")
    out.append("</svg>")
    return "\n".join(out)


@functools.lru_cache(maxsize=32)
def _layout_cached(key: str, body: str) -> graph.Layout:
    """The layout of one graph shape; the key is the body's hash, so a run's viewers (and its
    page loads) share it."""
    data = json.loads(body)
    return graph.layout(data["steps"], data["edges"], data["finally"])


@functools.lru_cache(maxsize=32)
def _graph_cached(key: str, body: str) -> str:
    """The uncoloured SVG of one graph shape (POST /ui/graph)."""
    return _svg(_layout_cached(key, body), None)


def _script_json(value: Any) -> Markup:
    """JSON for a `<script type="application/json">` element: `<`, `>` and `&` escaped as
    JSON escapes, so no value can end the element or open a comment."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # what orjson refuses (integers past 64 bits)
        text = json.dumps(value, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e")
                  .replace("&", "\\u0026"))


async def _first_state(request: web.Request, user: User, ns: str, name: str
                       ) -> dict[str, Markup] | None:
    """The run's current state for its page itself: the stream's live shape as JSON and the
    graph as SVG already coloured by phase, so the page draws at once instead of after its
    script has opened the stream and the snapshot has come (~600 ms of a 1,000-step run's
    page under load). Read as `GET runs/{name}` reads it, only for a caller RBAC lets `get`
    runs here; on any error the page starts empty and the stream says what is wrong."""
    try:
        if not await request.app[ACCESS_KEY].allowed(user, Check("get", "workflowruns", ns)):
            return None
        kube = request.app[KUBE_KEY]
        run = await get_run(kube, ns, name)
        detail = live_detail(views.run_detail(run, await spec_of(kube, run)))
    except (ApiError, KubeError, ClientError, OSError, TimeoutError):
        return None
    names = [str(s["name"]) for s in detail["steps"]]
    state: dict[str, Markup] = {"initial": _script_json(detail)}
    if len(names) <= MAX_GRAPH_STEPS and len(detail["edges"]) <= MAX_GRAPH_EDGES:
        body = json.dumps({"steps": names, "edges": detail["edges"],
                           "finally": detail["finally"]}, separators=(",", ":"))
        key = hashlib.sha256(body.encode()).hexdigest()
        phases = {str(s["name"]): str(s["phase"]) for s in detail["steps"]}
        state["graph"] = Markup(_svg(_layout_cached(key, body), phases))
    return state


def _mode(request: web.Request) -> str:
    """"local" under `taskforge ui` (the kubeconfig's identity), else "cluster"."""
    local = ACCESS_KEY in request.app and isinstance(request.app[ACCESS_KEY], LocalAccess)
    return "local" if local else "cluster"


def _name(request: web.Request, key: str) -> str:
    value = request.match_info[key]
    if not _NAME.match(value):
        raise web.HTTPNotFound(text=f"{key} {value!r} is not a Kubernetes name")
    return value


async def _page(request: web.Request, template: str, page: str, **context: Any
                ) -> web.Response:
    user: User | None = await current_user(request)
    if user is None:
        raise web.HTTPFound(f"/login?next={quote(request.path_qs, safe='')}")
    html = render(template, page=page, mode=_mode(request), user=user, **context)
    return web.Response(text=html, content_type="text/html",
                        headers={"Cache-Control": "no-store",
                                 "Content-Security-Policy": CSP})


# Everything the pages load is their own: no inline script, no third-party origin.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
       " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


async def index(request: web.Request) -> web.Response:
    ns = request.cookies.get("taskforge_ns", "default")
    ns = ns if _NAME.match(ns) else "default"
    raise web.HTTPFound(f"/namespaces/{ns}/runs")


async def pick_namespace(request: web.Request) -> web.Response:
    """The header's namespace box (a plain GET form, so it works with no script)."""
    ns = request.query.get("ns", "").strip()
    if not _NAME.match(ns):
        raise web.HTTPFound("/")
    raise web.HTTPFound(f"/namespaces/{ns}/runs")


async def login(request: web.Request) -> web.Response:
    nxt = request.query.get("next", "/")
    if not nxt.startswith("/") or nxt.startswith("//"):
        nxt = "/"  # never an open redirect
    html = render("login.html", page="login", mode=_mode(request), user=None, ns=None,
                  next=nxt)
    return web.Response(text=html, content_type="text/html",
                        headers={"Content-Security-Policy": CSP})


async def workflows(request: web.Request) -> web.Response:
    return await _page(request, "workflows.html", "workflows", ns=_name(request, "ns"))


async def workflow(request: web.Request) -> web.Response:
    return await _page(request, "workflow.html", "workflow", ns=_name(request, "ns"),
                       workflow=_name(request, "name"))


async def runs(request: web.Request) -> web.Response:
    wanted = set(request.query.getall("phase", []))
    for value in request.query.getall("phase", []):
        wanted.update(value.split(","))
    wf = request.query.get("workflow") or None
    if wf is not None and not _NAME.match(wf):
        raise web.HTTPBadRequest(text=f"workflow {wf!r} is not a Kubernetes name")
    return await _page(request, "runs.html", "runs", ns=_name(request, "ns"), workflow=wf,
                       phases=PHASES, selected=wanted & set(PHASES))


async def run(request: web.Request) -> web.Response:
    ns, name = _name(request, "ns"), _name(request, "name")
    user = await current_user(request)
    state = await _first_state(request, user, ns, name) if user is not None else None
    return await _page(request, "run.html", "run", ns=ns, run=name, **(state or {}))


async def deadletters(request: web.Request) -> web.Response:
    return await _page(request, "deadletters.html", "deadletters", ns=_name(request, "ns"))


def _strings(body: dict[str, Any], key: str, limit: int) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or len(value) > limit:
        raise ApiError(400, f"{key} must be a list of at most {limit} step names", key)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not 0 < len(item) <= MAX_STEP_NAME:
            raise ApiError(400, f"{key}[{i}] must be a step name (1-{MAX_STEP_NAME} chars)",
                           f"{key}[{i}]")
    return value


def graph_request(body: dict[str, Any]) -> str:
    """The checked graph request as canonical JSON; 400 naming the bad field otherwise."""
    steps = _strings(body, "steps", MAX_GRAPH_STEPS)
    final = _strings(body, "finally", MAX_GRAPH_STEPS)
    edges = body.get("edges", [])
    if not isinstance(edges, list) or len(edges) > MAX_GRAPH_EDGES:
        raise ApiError(400, f"edges must be a list of at most {MAX_GRAPH_EDGES} pairs",
                       "edges")
    for i, edge in enumerate(edges):
        if (not isinstance(edge, list) or len(edge) != 2
                or not all(isinstance(x, str) for x in edge)):
            raise ApiError(400, f"edges[{i}] must be a [from, to] pair of step names",
                           f"edges[{i}]")
    return json.dumps({"steps": steps, "edges": edges, "finally": final},
                      separators=(",", ":"))


async def graph_svg(request: web.Request) -> web.Response:
    """POST {"steps": [names], "edges": [[from, to]], "finally": [names]} -> SVG.

    Pure layout of data the caller already read from the API, so no RBAC check beyond being
    logged in (which keeps anonymous callers from spending the server's CPU)."""
    await require_user(request)
    canonical = graph_request(await json_body(request))
    key = hashlib.sha256(canonical.encode()).hexdigest()
    return web.Response(text=_graph_cached(key, canonical), content_type="image/svg+xml",
                        headers={"Cache-Control": "no-store"})


async def _cache_assets(request: web.Request, response: web.StreamResponse) -> None:
    """A static file asked for by its current content hash (`?v=`, as the pages link it)
    never changes under that URL: browsers may keep it for good instead of asking again on
    every page load."""
    name = request.path.removeprefix("/static/")
    if (request.path.startswith("/static/") and response.status == 200
            and request.query.get("v") == _VERSIONS.get(name)):
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"


def add_pages(app: web.Application) -> None:
    """The hook `taskforge.web.app.create_app` calls: the UI's routes and static files."""
    r = app.router
    r.add_get("/", index)
    r.add_get("/login", login)
    r.add_get("/namespaces", pick_namespace)
    r.add_get("/namespaces/{ns}/workflows", workflows)
    r.add_get("/namespaces/{ns}/workflows/{name}", workflow)
    r.add_get("/namespaces/{ns}/runs", runs)
    r.add_get("/namespaces/{ns}/runs/{name}", run)
    r.add_get("/namespaces/{ns}/deadletters", deadletters)
    r.add_post("/ui/graph", graph_svg)
    r.add_static("/static/", STATIC, append_version=False)
    app.on_response_prepare.append(_cache_assets)
