"""Large step results: read from the pod log, kept in ConfigMaps owned by the run, read back.

Why ConfigMaps (and not the log alone, or Redis). The log goes with the pod: the Job's TTL
(10 minutes by default), a node drain or podgc delete it, and runs last longer than that and
are read afterwards (`taskforge get`). Redis is optional and not durable, and status, the
source of truth, must never name a result that may vanish. A ConfigMap lives in etcd next to
the run, carries an ownerReference to it (deleted with it by the garbage collector), needs
no extra component, and its size limit (1 MiB of data) fits a gzip'd 1 MiB result; the rare
result that gzip cannot shrink enough is split over a second ConfigMap.

Costs per step whose result exceeds its share of status: one log GET (only when the result
was also too big for the 4 KiB termination message) and one ConfigMap create. Reading it
back for a later step's templates is one GET, cached here (LRU, `CACHE_BYTES`). Everything
runs in a thread, never on the event loop, and every read is capped: a log at
`log_read_window` bytes, a result at `MAX_RESULT_BYTES` once unzipped.
"""

from __future__ import annotations

import base64
import gzip
import threading
from collections import OrderedDict
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from taskforge import API_VERSION
from taskforge.adapters import kube
from taskforge.adapters.jobs import LABEL_ATTEMPT, LABEL_RUN, LABEL_STEP, RunRef
from taskforge.adapters.resultpack import (
    ANNOTATION_PARTS,
    ANNOTATION_SHA,
    ANNOTATION_SIZE,
    DATA_KEY,
    LABEL_RESULT,
    PART_BYTES,
    ResultReadError,
    part_name,
    read_result,
)
from taskforge.api.resultlog import ResultLogError, log_read_window, parse_log
from taskforge.engine.actions import StoreResult
from taskforge.engine.naming import label_value

CONTAINER = "step"
CACHE_BYTES = 64 * 1024 * 1024
LOG_TIMEOUT_SECONDS = 30


def _core() -> client.CoreV1Api:
    return client.CoreV1Api(kube.api_client())


def _read_capped(response: Any, cap: int) -> bytes:
    """At most `cap` bytes of a streamed response, so a log can never fill memory."""
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.stream(64 * 1024, decode_content=True):
            chunks.append(chunk[: cap - total])
            total += len(chunks[-1])
            if total >= cap:
                break
    finally:
        response.release_conn()
    return b"".join(chunks)


def read_result_log(namespace: str, pod: str, ref: dict[str, Any]) -> bytes:
    """The result a step printed to its log; ResultLogError when it is not there whole."""
    tail, limit = log_read_window(int(ref["lines"]))
    response = _core().read_namespaced_pod_log(
        pod, namespace, container=CONTAINER, tail_lines=tail, limit_bytes=limit,
        _preload_content=False, _request_timeout=LOG_TIMEOUT_SECONDS,
    )
    text = _read_capped(response, limit)
    return parse_log(text, size=int(ref["size"]), sha256=str(ref["sha256"]),
                     lines=int(ref["lines"]))


def _manifest(run: RunRef, action: StoreResult, index: int, parts: list[bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": part_name(action.config_map, index),
            "namespace": run.namespace,
            "labels": {
                LABEL_RESULT: "true",
                LABEL_RUN: label_value(run.name),
                LABEL_STEP: label_value(action.step),
                LABEL_ATTEMPT: str(action.attempt),
            },
            "annotations": {
                ANNOTATION_SHA: action.sha256,
                ANNOTATION_SIZE: str(len(action.data)),
                ANNOTATION_PARTS: str(len(parts)),
            },
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": "WorkflowRun", "name": run.name,
                "uid": run.uid, "controller": False, "blockOwnerDeletion": False,
            }],
        },
        "immutable": True,
        "binaryData": {DATA_KEY: base64.b64encode(parts[index]).decode()},
    }


def store_result(run: RunRef, action: StoreResult) -> bool:
    """Create the result's ConfigMap(s); False when they exist already with this result."""
    packed = gzip.compress(action.data, compresslevel=6, mtime=0)
    parts = [packed[i : i + PART_BYTES] for i in range(0, len(packed), PART_BYTES)]
    created = False
    # The first part last: a reader that finds it finds the others too.
    for index in reversed(range(len(parts))):
        body = _manifest(run, action, index, parts)
        try:
            kube.discard(_core().create_namespaced_config_map(
                run.namespace, cast(Any, body), _preload_content=False,
                field_manager=kube.FIELD_MANAGER))
            created = True
        except ApiException as exc:
            if exc.status != 409:
                raise
            name = body["metadata"]["name"]
            existing = _get(run.namespace, name)
            sha = ((existing or {}).get("metadata") or {}).get("annotations", {}).get(
                ANNOTATION_SHA)
            if sha != action.sha256:
                raise ResultReadError(f"configmap {run.namespace}/{name} exists with another"
                                      " result") from exc
    return created


def _get(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        response = _core().read_namespaced_config_map(name, namespace, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return kube.read_body(response)


def load_result(namespace: str, name: str, sha256: str) -> bytes:
    """The stored result's JSON, checked (resultpack.read_result), read with the operator's
    client."""
    return read_result(namespace, name, sha256, lambda part: _get(namespace, part))


class ResultCache:
    """Recently stored or loaded results, by (namespace, ConfigMap, SHA-256), LRU by bytes."""

    def __init__(self, capacity: int = CACHE_BYTES) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: tuple[str, str, str], data: bytes) -> None:
        with self._lock:
            if key in self._items or len(data) > self.capacity:
                return
            self._items[key] = data
            self._size += len(data)
            while self._size > self.capacity:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)


__all__ = [
    "ResultCache",
    "ResultLogError",
    "ResultReadError",
    "load_result",
    "read_result_log",
    "store_result",
]
