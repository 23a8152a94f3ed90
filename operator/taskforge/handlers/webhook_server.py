"""The webhook endpoint `POST /hooks/{namespace}/{workflow}`, on the operator's one aiohttp
server (which also serves /metrics, /healthz and /readyz: handlers/endpoints.py).

It runs inside the operator's event loop (started from the kopf startup handler), so nothing
here may block: Kubernetes calls go through `taskforge.adapters.kube` in `asyncio.to_thread`,
and `lookup_workflow` must be a cheap read of the operator's cache. Every decision (who may
deliver, what the run looks like, which status code) is `taskforge.engine.webhook`'s; this
module only moves bytes and calls the API server.

Order of checks, each answered with JSON `{"error", "reason"}`:
404 unknown workflow or webhook off, 415 not JSON, 413 too large (from Content-Length, then
while reading: at most `maxBodyBytes + 1` bytes are ever read, and the connection is closed
rather than drained), 401 bad signature or token, 400 bad JSON or params, 429 when `admit`
says so (last, so neither strangers nor broken deliveries spend the workflow's rate), 503 when
the limit could not be checked in time (busy is never taken for a yes), then 202 with the run.
A redelivery (same delivery id) gets 202 with the run it started before and `duplicate: true`.

An accepted delivery's token is reserved for the run it is about to create (`admit` returns
the reservation id, which goes into `spec.trigger.reservation`); if that run is not created,
or already existed, `release` cancels the reservation and gives the token back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from taskforge.adapters import kube
from taskforge.api.workflow import Webhook
from taskforge.engine.webhook import (
    DeliveryAdmission,
    RejectedError,
    authenticate,
    check_content_type,
    check_length,
    declared_params,
    delivery_id,
    is_same_delivery,
    map_params,
    parse_body,
    too_large,
    webhook_of,
    webhook_run_manifest,
    webhook_run_name,
)
from taskforge.handlers.endpoints import Readiness, add_routes, count_deliveries

log = logging.getLogger(__name__)

Lookup = Callable[[str, str], dict[str, Any] | None]
Admit = Callable[[str, str, str], Awaitable[DeliveryAdmission]]
Release = Callable[[str, str, str, str], Awaitable[None]]

SECRET_TTL = 10.0
"""Seconds a Secret's value (or its absence) is reused: a rotated key, or a Secret created after
the Workflow, takes effect within this time."""
_READ_CHUNK = 64 * 1024
_MAX_CACHED_SECRETS = 4096


class _SecretCache:
    """Webhook keys, briefly cached, with one API read in flight per key however many
    deliveries arrive at once (a burst must not become a burst of Secret reads)."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[tuple[str, str, str], tuple[float, asyncio.Future[bytes | None]]] = {}

    async def get(self, namespace: str, name: str, key: str) -> bytes | None:
        loop = asyncio.get_running_loop()
        k = (namespace, name, key)
        hit = self._entries.get(k)
        if hit is None or hit[0] <= loop.time():
            if len(self._entries) >= _MAX_CACHED_SECRETS:
                self._entries = {x: e for x, e in self._entries.items() if e[0] > loop.time()}
            read = asyncio.to_thread(kube.read_secret_key, namespace, name, key)
            hit = (loop.time() + self._ttl, asyncio.ensure_future(read))
            self._entries[k] = hit
        try:
            return await asyncio.shield(hit[1])  # a caller that goes away must not cancel it
        except Exception:
            if self._entries.get(k) is hit:
                del self._entries[k]  # do not cache a failure
            raise


def _error(status: int, reason: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message, "reason": reason}, status=status, headers=headers)


def _api_failure(exc: Exception) -> RejectedError:
    """An API server error as the sender should see it; details stay in the operator's log."""
    status = getattr(exc, "status", None)
    if status == 413 or "too large" in str(exc).lower():
        return RejectedError(413, "BodyTooLarge", "the run with this body is too large to store")
    if status == 422:
        return RejectedError(422, "RunRejected",
                             f"the API server rejected the run: {getattr(exc, 'reason', '')}")
    return RejectedError(503, "KubernetesUnavailable", "could not create the run; retry later")


def _create_run(
    namespace: str, workflow: str, delivery: str | None, manifest: dict[str, Any]
) -> tuple[str, bool]:
    """Create the run; on 409 for this delivery, return the run that exists (a redelivery).
    Runs in a worker thread (blocking client)."""
    for _ in range(2):  # a second pass only if the existing run vanished in between
        try:
            created = kube.create_object(kube.RUNS, namespace, manifest)
            return str(created["metadata"]["name"]), False
        except Exception as exc:
            if delivery is None or not kube.is_status(exc, 409):
                raise
        name = manifest["metadata"]["name"]
        existing = kube.get_object(kube.RUNS, namespace, name)
        if existing is None:
            continue
        if not is_same_delivery(existing, workflow, delivery):
            raise RejectedError(409, "NameTaken",
                                f"run {name} exists and is not this delivery's run")
        return name, True
    raise RejectedError(503, "KubernetesUnavailable", "the run was deleted while it was created")


async def _read_body(request: web.Request, webhook: Webhook) -> bytes:
    """At most `maxBodyBytes + 1` bytes: enough to know the body is too large, never the rest
    (a chunked body has no Content-Length to check first)."""
    limit = webhook.max_body_bytes
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(min(_READ_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            raise too_large(webhook)


class _Hooks:
    def __init__(
        self, lookup: Lookup, admit: Admit | None, release: Release | None, secret_ttl: float
    ) -> None:
        self._lookup = lookup
        self._admit = admit
        self._release = release
        self._secrets = _SecretCache(secret_ttl)

    async def deliver(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["namespace"], request.match_info["workflow"]
        try:
            return await self._deliver(request, ns, name)
        except RejectedError as exc:
            # 4xx at debug: a flood of forged deliveries must not become a flood of log lines.
            level = logging.WARNING if exc.status >= 500 else logging.DEBUG
            log.log(level, "webhook %s/%s: %d %s", ns, name, exc.status, exc.reason)
            return _error(exc.status, exc.reason, exc.message)

    async def _deliver(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        workflow = self._lookup(ns, name)
        webhook = webhook_of(workflow, ns, name)
        check_content_type(request.headers.get("Content-Type"))
        check_length(webhook, request.content_length)
        body = await _read_body(request, webhook)
        ref = webhook.secret_ref
        try:
            key = await self._secrets.get(ns, ref.name, ref.key)
        except Exception as exc:
            log.warning("webhook %s/%s: reading Secret %s failed: %s", ns, name, ref.name, exc)
            if kube.is_status(exc, 403):
                raise RejectedError(500, "SecretUnavailable", "the operator may not read the"
                                    " webhook's Secret (RBAC)") from exc
            raise _api_failure(exc) from exc
        authenticate(webhook, key, body, request.headers)
        data = parse_body(body)
        params = map_params(webhook, data, declared_params(workflow or {}))
        delivery = delivery_id(request.headers)
        run_name = webhook_run_name(ns, name, delivery, secrets.token_hex(5))
        admitted = DeliveryAdmission()
        if self._admit is not None:
            admitted = await self._admit(ns, name, run_name)
            if not admitted.accepted:
                seconds = str(max(1, math.ceil(admitted.retry_after or 1.0)))
                if admitted.busy:
                    return _error(503, "RateLimitUnchecked", "the rate limit could not be"
                                  f" checked in time; retry in {seconds}s",
                                  **{"Retry-After": seconds})
                return _error(429, "RateLimited", f"too many deliveries; retry in {seconds}s",
                              **{"Retry-After": seconds})
        manifest = webhook_run_manifest(ns, name, run_name, delivery=delivery, body=data,
                                        params=params, reservation=admitted.reservation)
        try:
            run, duplicate = await asyncio.to_thread(_create_run, ns, name, delivery, manifest)
        except RejectedError:
            await self._give_back(ns, name, run_name, admitted)
            raise
        except Exception as exc:
            await self._give_back(ns, name, run_name, admitted)
            log.warning("webhook %s/%s: creating the run failed: %s", ns, name, exc)
            raise _api_failure(exc) from exc
        if duplicate:
            await self._give_back(ns, name, run_name, admitted)
        log.info("webhook %s/%s: delivery %s -> run %s%s", ns, name, delivery or "-", run,
                 " (duplicate)" if duplicate else "")
        return web.json_response({"run": run, "namespace": ns, "duplicate": duplicate},
                                 status=202)

    async def _give_back(
        self, ns: str, name: str, run_name: str, admitted: DeliveryAdmission
    ) -> None:
        """The reserved token bought no new run: cancel the reservation (best effort)."""
        if self._release is not None and admitted.reservation is not None:
            await self._release(ns, name, run_name, admitted.reservation)


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown paths, wrong methods and bugs answer in the same JSON shape as rejections."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason.replace(" ", ""), exc.reason,
                      **({"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}))
    except Exception:
        log.exception("webhook: unexpected error on %s %s", request.method, request.path)
        return _error(500, "InternalError", "internal error; see the operator's log")


def make_app(lookup_workflow: Lookup, *, admit: Admit | None = None,
             release: Release | None = None, secret_ttl: float = SECRET_TTL,
             readiness: Readiness | None = None) -> web.Application:
    hooks = _Hooks(lookup_workflow, admit, release, secret_ttl)
    app = web.Application(middlewares=[count_deliveries, _json_errors])
    app.router.add_post("/hooks/{namespace}/{workflow}", hooks.deliver)
    add_routes(app, readiness)
    return app


async def start_webhook_server(
    port: int,
    lookup_workflow: Lookup,
    *,
    admit: Admit | None = None,
    release: Release | None = None,
    host: str = "0.0.0.0",
    secret_ttl: float = SECRET_TTL,
    readiness: Readiness | None = None,
) -> web.AppRunner:
    """Serve until `await runner.cleanup()`. `port=0` picks a free port: read it back from
    `runner.addresses[0][1]`. `lookup_workflow(ns, name)` returns the Workflow object (the
    operator's cache) or None; `admit(ns, name, run)` answers with a DeliveryAdmission (accept,
    possibly with a reservation for `run`; or 429 / 503 after retry_after). It is asked once
    per authentic, well-formed delivery, redeliveries included (whether one is a redelivery is
    known only at the create's 409, after which `release(ns, name, run, reservation)` gives the
    token back). `readiness()` answers /readyz (handlers/endpoints.py)."""
    app = make_app(lookup_workflow, admit=admit, release=release, secret_ttl=secret_ttl,
                   readiness=readiness)
    # lingering_time=0: after an early answer (413, 401...) close the connection instead of
    # reading and discarding the rest of a body we have refused.
    runner = web.AppRunner(app, access_log=None, lingering_time=0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("HTTP server (/hooks, /metrics, /healthz, /readyz) listening on %s:%s", host,
             runner.addresses[0][1])
    return runner
