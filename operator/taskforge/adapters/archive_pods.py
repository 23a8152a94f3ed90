"""Reading an ended attempt's log (and the Secrets that redact it) for the archive.

The API server's `limitBytes` keeps the head of a log; the archive wants its end (where
the error is), so the log is streamed from `tailLines` back and only its last `cap`
bytes are kept: memory stays bounded whatever the pod printed.

Both reads go over the operator's aiohttp session (adapters/kube_async.py), not the
kubernetes client in a thread: the generated client costs about 1 ms more CPU a call, and
its `CoreV1Api` is imported on first use, 0.6 s of CPU under the import lock. In a fresh
operator that import held the first log reads 4-8 s under load, long enough for a short Job
TTL (3 s in the e2e tests) to delete the pods first (bench/RESULTS.md, 2026-12-01). Only
through an HTTP proxy, which aiohttp is not told about, do they use the sync client.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import quote

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from taskforge.adapters import fastjson, kube, kube_async

CONTAINER = "step"
READ_TIMEOUT = (5.0, 30.0)
"""(connect, between bytes) seconds, for the sync client behind a proxy."""
CHUNK = 64 * 1024


def _log_path(namespace: str, pod: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/log"


class _Tail:
    """The last `cap` bytes of what is fed, and whether more came before them."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = bytearray()
        self.more = False

    def feed(self, chunk: bytes) -> None:
        self.kept += chunk
        if len(self.kept) > 2 * self.cap:
            del self.kept[: len(self.kept) - self.cap]
            self.more = True

    def result(self) -> tuple[bytes, bool]:
        if len(self.kept) > self.cap:
            self.more = True
            del self.kept[: len(self.kept) - self.cap]
        return bytes(self.kept), self.more


async def read_log_tail(namespace: str, pod: str, cap: int,
                        tail_lines: int) -> tuple[bytes, bool]:
    """The last `cap` bytes of the step container's log, and whether more was there."""
    if kube_async.proxied():
        return await asyncio.to_thread(_read_log_tail_sync, namespace, pod, cap, tail_lines)
    tail = _Tail(cap)
    query = [("container", CONTAINER), ("tailLines", str(tail_lines))]
    async with kube_async.stream(_log_path(namespace, pod), query) as body:
        async for chunk in body.iter_chunked(CHUNK):
            tail.feed(chunk)
    return tail.result()


def _read_log_tail_sync(namespace: str, pod: str, cap: int,
                        tail_lines: int) -> tuple[bytes, bool]:
    api = client.CoreV1Api(kube.api_client())
    response: Any = api.read_namespaced_pod_log(
        pod, namespace, container=CONTAINER, tail_lines=tail_lines,
        _preload_content=False, _request_timeout=READ_TIMEOUT)
    tail = _Tail(cap)
    try:
        for chunk in response.stream(CHUNK, decode_content=True):
            tail.feed(chunk)
    finally:
        response.release_conn()
    return tail.result()


async def read_secret_key(namespace: str, name: str, key: str) -> bytes | None:
    """One value of a Secret; None when the Secret or the key is missing. ApiException for
    anything else (the caller withholds the log it could not redact)."""
    if kube_async.proxied():
        return await asyncio.to_thread(kube.read_secret_key, namespace, name, key)
    try:
        data = await kube_async.request(
            "GET", f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets/"
                   f"{quote(name, safe='')}")
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    value = ((fastjson.loads(data) or {}).get("data") or {}).get(key)
    return base64.b64decode(value) if isinstance(value, str) else None
