"""The hot path's API calls on one aiohttp session in the event loop: Job create, run status
patch, Event.

The same calls through the sync client cost 1.9 ms of CPU each against 0.8 ms here
(bench/api_client_ab.py, bench/RESULTS.md "API client"): urllib3 and http.client, the hop to a
worker thread and back, the client's walk over the body. A single-step run makes four of them,
so this is about 4 ms of the operator's CPU per run (issue 14). Everything else (reads, deletes,
leases, authz, results) stays on the shared sync client in `kube.py`, which is also where the
connection settings come from: the same host, CA, client certificate and bearer token, the
token asked for on every call so the client's refresh hook (in-cluster token rotation, exec
plugins) keeps working. Through an HTTP proxy the sync client is used instead, as it knows how.

Errors are the client's `ApiException`, with the status, reason and body the API server sent,
so `kube.is_status`, `kube.describe` and `kube.is_too_large` read them as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from kubernetes.client.exceptions import ApiException

from taskforge import GROUP, VERSION
from taskforge.adapters import fastjson, kube

_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
TRACE_CONFIGS: list[aiohttp.TraceConfig] = []
"""Given to sessions made from now on (tests count the connections opened with one)."""


def _tls(cfg: Any) -> ssl.SSLContext | bool:
    if not str(cfg.host).startswith("https"):
        return False
    context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
    if not cfg.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cfg.cert_file:
        context.load_cert_chain(cfg.cert_file, cfg.key_file or None)
    return context


def _session(cfg: Any) -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        connector = aiohttp.TCPConnector(ssl=_tls(cfg), limit=32)
        session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=60),
            json_serialize=lambda o: orjson.dumps(o).decode(), trace_configs=TRACE_CONFIGS,
        )
        _sessions[loop] = session
    return session


async def close() -> None:
    """Close this loop's session (the operator's shutdown)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


async def request(method: str, path: str, *, body: Any = None,
                  query: list[tuple[str, str]] | None = None,
                  content_type: str = "application/json") -> bytes:
    """One call; the response body, read whole (so the connection goes back to the pool)."""
    cfg = kube.api_client().configuration
    if cfg.proxy:
        return await asyncio.to_thread(_through_sync_client, method, path, body, query,
                                       content_type)
    headers = _headers(cfg, {"Accept": "application/json", "Content-Type": content_type})
    data = orjson.dumps(body) if body is not None else None
    async with _session(cfg).request(method, f"{cfg.host}{path}", params=query or None,
                                     data=data, headers=headers) as response:
        payload = await response.read()
        if not 200 <= response.status <= 299:
            raise _api_error(response, payload)
        return payload


def _api_error(response: aiohttp.ClientResponse, payload: bytes) -> ApiException:
    """The generated client's exception for a failed answer, so `kube.is_status` and the
    rest read it as before."""
    error = ApiException(status=response.status, reason=response.reason,
                         body=payload.decode(errors="replace"))
    error.headers = response.headers
    return error


def _headers(cfg: Any, headers: dict[str, str]) -> dict[str, str]:
    token = cfg.get_api_key_with_prefix("BearerToken", alias="authorization")
    if token:
        headers["Authorization"] = token
    return headers


def proxied() -> bool:
    """Whether the API server is reached through an HTTP proxy (then only the sync client)."""
    return bool(kube.api_client().configuration.proxy)


@contextlib.asynccontextmanager
async def stream(path: str, query: list[tuple[str, str]] | None = None
                 ) -> AsyncIterator[aiohttp.StreamReader]:
    """A GET whose body the caller reads piece by piece (a pod's log: the run archive keeps
    its tail, bounded); the connection goes back to the pool when the block ends. Errors as
    `request`'s. Not through a proxy (see `proxied`)."""
    cfg = kube.api_client().configuration
    headers = _headers(cfg, {"Accept": "*/*"})
    async with _session(cfg).get(f"{cfg.host}{path}", params=query or None,
                                 headers=headers) as response:
        if not 200 <= response.status <= 299:
            raise _api_error(response, await response.read())
        yield response.content


def _through_sync_client(method: str, path: str, body: Any,
                         query: list[tuple[str, str]] | None, content_type: str) -> bytes:
    response = kube.request(method, path, body=body, query=query, content_type=content_type)
    try:
        return bytes(response.data)
    finally:
        response.release_conn()


async def create_job(namespace: str, manifest: dict[str, Any]) -> bool:
    """kube.create_job, in the loop: False when this very Job exists; a 409 for another
    run's Job of that name raises JobNameTakenError (checked by the sync path's read)."""
    try:
        await request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body=manifest,
                      query=[("fieldManager", kube.FIELD_MANAGER)])
    except ApiException as exc:
        if exc.status != 409:
            raise
        return await asyncio.to_thread(kube.create_job, namespace, manifest)  # rare: 409
    return True


async def patch_status(plural: str, namespace: str, name: str,
                       patch: dict[str, Any]) -> dict[str, Any]:
    """kube.patch_status, in the loop: the object as the server stored it."""
    data = await request(
        "PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}/status",
        body=patch, query=[("fieldManager", kube.FIELD_MANAGER)], content_type=kube.MERGE_PATCH)
    return dict(fastjson.loads(data)) if data else {}
