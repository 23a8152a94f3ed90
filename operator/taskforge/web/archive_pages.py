"""The web UI's pages over the run archive (issue 18 item 3): the archived runs of a
namespace, and one archived run with its attempts and logs, marked "from the run archive".

Shells as the other pages are (pages.py): no data on the server side; `ui/static/archive.js`
reads the archive API (taskforge.web.archive, RBAC as the caller) and fills them. Kept apart
from the live pages' template and script, which change for their own reasons.
"""

from __future__ import annotations

import re

from aiohttp import web

from taskforge.web.archive import ARCHIVED_PHASES
from taskforge.web.pages import _NAME, _name, _page

_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


async def archived_runs(request: web.Request) -> web.Response:
    selected = {p for value in request.query.getall("phase", []) for p in value.split(",")}
    wf = request.query.get("workflow") or None
    if wf is not None and not _NAME.match(wf):
        raise web.HTTPBadRequest(text=f"workflow {wf!r} is not a Kubernetes name")
    return await _page(request, "archive.html", "archive", ns=_name(request, "ns"),
                       workflow=wf, phases=ARCHIVED_PHASES,
                       selected=selected & set(ARCHIVED_PHASES))


async def archived_run(request: web.Request) -> web.Response:
    uid = request.query.get("uid") or None
    if uid is not None and not _UID.match(uid):
        raise web.HTTPBadRequest(text="uid is not a run uid")
    return await _page(request, "archived_run.html", "archived-run", ns=_name(request, "ns"),
                       run=_name(request, "name"), uid=uid)


def add_pages(app: web.Application) -> None:
    app.router.add_get("/namespaces/{ns}/archive", archived_runs)
    app.router.add_get("/namespaces/{ns}/archive/{name}", archived_run)
