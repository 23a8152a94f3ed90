"""The operator's own endpoints on its one HTTP server: /metrics, /healthz and /readyz.

One aiohttp server on TASKFORGE_HTTP_PORT serves these and the webhook triggers (/hooks),
in the operator's event loop. It replaced three servers (prometheus_client's thread, kopf's
health server, the webhook app) and their three ports.

* /healthz (liveness) answers 200 whenever the event loop runs: it needs no Kubernetes or
  Redis, so a broken dependency never gets the pod restarted for nothing.
* /readyz (readiness) answers 200 only when every check passes: the operator has started,
  its caches are synced, and Redis answers (when configured). The body names each check.
* /metrics is prometheus_client's aiohttp handler on the default registry.

Probes are logged at DEBUG only (the server has no access log); webhook deliveries are counted
by answer code here too, so a flood of forged deliveries is a number, not log lines.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from taskforge.adapters import metrics

Readiness = Callable[[], Awaitable[dict[str, bool]]]
"""Named checks, each True when it passes."""


async def _healthz(_: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


def _readyz(readiness: Readiness | None) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def readyz(_: web.Request) -> web.Response:
        checks = await readiness() if readiness is not None else {}
        ok = all(checks.values())
        return web.json_response({"status": "ok" if ok else "unavailable", "checks": checks},
                                 status=200 if ok else 503)

    return readyz


@web.middleware
async def count_deliveries(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Webhook answers by code, and their latency (outermost: sees the final answer)."""
    if not request.path.startswith("/hooks/"):
        return await handler(request)
    started = time.perf_counter()
    code = 500
    try:
        response = await handler(request)
        code = response.status
        return response
    finally:
        metrics.WEBHOOK_REQUESTS.labels(str(code)).inc()
        metrics.WEBHOOK_SECONDS.observe(time.perf_counter() - started)


def add_routes(app: web.Application, readiness: Readiness | None) -> None:
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz(readiness))
    app.router.add_get("/metrics", make_aiohttp_handler())
