"""Reading an ended attempt's log for the archive: the tail, bounded, streamed.

The API server's `limitBytes` keeps the head of a log; the archive wants its end (where
the error is), so the log is streamed from `tailLines` back and only its last `cap`
bytes are kept: memory stays bounded whatever the pod printed.

The reads use a client of their own (same configuration, its own connection pool), so a
slow log never holds a connection the reconciles need.
"""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client

from taskforge.adapters import kube

CONTAINER = "step"
READ_TIMEOUT = (5.0, 30.0)
"""(connect, between bytes) seconds."""

_lock = threading.Lock()
_client: list[client.CoreV1Api] = []


def _core() -> client.CoreV1Api:
    with _lock:
        if not _client:
            shared = kube.api_client()
            _client.append(client.CoreV1Api(client.ApiClient(shared.configuration)))
        return _client[0]


def read_log_tail(namespace: str, pod: str, cap: int, tail_lines: int) -> tuple[bytes, bool]:
    """The last `cap` bytes of the step container's log, and whether more was there."""
    response: Any = _core().read_namespaced_pod_log(
        pod, namespace, container=CONTAINER, tail_lines=tail_lines,
        _preload_content=False, _request_timeout=READ_TIMEOUT)
    kept = bytearray()
    more = False
    try:
        for chunk in response.stream(64 * 1024, decode_content=True):
            kept += chunk
            if len(kept) > 2 * cap:
                del kept[: len(kept) - cap]
                more = True
    finally:
        response.release_conn()
    if len(kept) > cap:
        more = True
        del kept[: len(kept) - cap]
    return bytes(kept), more
