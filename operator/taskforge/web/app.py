"""The aiohttp application: the JSON API, live streams, login, and the UI's pages.

`create_app` wires the parts given to it (tests and `taskforge ui` build them their own
way); `build` makes them from the environment for the chart's Deployment. Pages come from
`taskforge.web.pages.add_pages(app)` (helper webui's module) when it exists, or from the
`pages` callables given: the API does not depend on the UI.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest

from taskforge.adapters.redis_client import RedisConnection, RedisSettings
from taskforge.web import actions, archive, deadletters, live, reads
from taskforge.web.auth import (
    ACCESS_KEY,
    COOKIE,
    Access,
    Check,
    csrf_guard,
    require_user,
)
from taskforge.web.deadletters import DLQ_KEY, DeadLetterBackend
from taskforge.web.errors import ApiError, json_body, json_errors
from taskforge.web.hub import REGISTRY, Hub
from taskforge.web.kubeapi import KubeApi
from taskforge.web.live import HUB_KEY
from taskforge.web.state import KUBE_KEY, SETTINGS_KEY, WebSettings, name_arg

__all__ = ["SETTINGS_KEY", "create_app"]

log = logging.getLogger("taskforge.web")
PageHook = Callable[[web.Application], None]

# What each button of the UI needs (the same checks the endpoints make).
PERMISSIONS: dict[str, dict[str, tuple[str, str, str, str]]] = {
    # verb, resource, group, subresource
    "runs": {"list": ("list", "workflowruns", "taskforge.io", ""),
             "get": ("get", "workflowruns", "taskforge.io", ""),
             "create": ("create", "workflowruns", "taskforge.io", ""),
             "cancel": ("patch", "workflowruns", "taskforge.io", ""),
             "retry": ("create", "workflowruns", "taskforge.io", "")},
    "workflows": {"list": ("list", "workflows", "taskforge.io", ""),
                  "get": ("get", "workflows", "taskforge.io", "")},
    "logs": {"get": ("get", "pods", "", "log")},
    "events": {"list": ("list", "events", "", "")},
    "deadletters": {"list": ("list", "workflowruns", "taskforge.io", ""),
                    "replay": ("create", "workflowruns", "taskforge.io", ""),
                    "purge": ("delete", "workflowruns", "taskforge.io", "")},
}


async def whoami(request: web.Request) -> web.Response:
    user = await require_user(request)
    return web.json_response({"user": user.public(), "mode": request.app[ACCESS_KEY].mode})


async def permissions(request: web.Request) -> web.Response:
    ns = name_arg(request, "ns")
    user = await require_user(request)
    access = request.app[ACCESS_KEY]
    flat = [(area, action, Check(verb, resource, ns, group=group, subresource=sub))
            for area, actions_ in PERMISSIONS.items()
            for action, (verb, resource, group, sub) in actions_.items()]
    unique = list({c for _, _, c in flat})
    answers = dict(zip(unique, await asyncio.gather(*(access.allowed(user, c) for c in unique)),
                       strict=True))
    out: dict[str, dict[str, bool]] = {}
    for area, action, check in flat:
        out.setdefault(area, {})[action] = answers[check]
    return web.json_response(out)


def _cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=request.app[SETTINGS_KEY].cookie_secure)


async def login(request: web.Request) -> web.StreamResponse:
    """POST {"token"}: check it, set the cookie. GET ?token=&next= (the URL `taskforge ui`
    prints): the same, then a redirect to `next` (a local path only)."""
    if request.method == "GET":
        token, nxt = request.query.get("token", ""), request.query.get("next", "/")
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"
    else:
        given = (await json_body(request)).get("token")
        if not isinstance(given, str) or not given.strip():
            raise ApiError(422, "token must be a non-empty string", "token")
        token, nxt = given, ""
    user = await request.app[ACCESS_KEY].authenticate(token.strip())
    if user is None:
        raise ApiError(401, "the API server did not accept this token")
    response = (web.Response(status=302, headers={"Location": nxt}) if nxt
                else web.json_response({"user": user.public()}))
    _cookie(request, response, token.strip())
    return response


async def logout(request: web.Request) -> web.Response:
    response = web.json_response({"loggedOut": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY),
                        content_type="text/plain", charset="utf-8")


def _default_pages() -> list[PageHook]:
    """The UI's page modules that exist: the live pages, and the run archive's."""
    hooks: list[PageHook] = []
    for name in ("taskforge.web.pages", "taskforge.web.archive_pages"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        hook: Any = getattr(module, "add_pages", None)
        if callable(hook):
            hooks.append(hook)
    return hooks


def create_app(
    settings: WebSettings, kube: KubeApi, access: Access, redis: RedisConnection | None,
    *, pages: Iterable[PageHook] | None = None,
) -> web.Application:
    app = web.Application(middlewares=[json_errors, csrf_guard], client_max_size=1_048_576)
    app[SETTINGS_KEY] = settings
    app[KUBE_KEY] = kube
    app[ACCESS_KEY] = access
    app[DLQ_KEY] = DeadLetterBackend(redis)
    app[HUB_KEY] = Hub(kube, live.renderers(), per_namespace=settings.mode == "local",
                       queue_size=settings.viewer_queue,
                       queue_bytes=settings.viewer_queue_bytes)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/whoami", whoami)
    app.router.add_post("/api/v1/login", login)
    app.router.add_get("/api/v1/login", login)
    app.router.add_post("/api/v1/logout", logout)
    app.router.add_get("/api/v1/namespaces/{ns}/permissions", permissions)
    for module in (reads, actions, deadletters, archive, live):
        module.add_routes(app)
    for hook in _default_pages() if pages is None else pages:
        hook(app)

    async def close(app: web.Application) -> None:
        await app[HUB_KEY].close()
        await app[DLQ_KEY].close()
        await app[KUBE_KEY].close()

    app.on_cleanup.append(close)
    app.on_shutdown.append(_end_streams)
    return app


async def _end_streams(app: web.Application) -> None:
    """Stop the watches first, so open SSE streams end instead of holding the shutdown."""
    await app[HUB_KEY].close()


def redis_from_env() -> RedisConnection | None:
    if not os.environ.get("REDIS_URL"):
        log.info("REDIS_URL is not set: the dead-letter endpoints answer 503")
        return None
    settings = RedisSettings.from_env()
    log.info("redis: %s", settings.describe())
    return RedisConnection(settings)
