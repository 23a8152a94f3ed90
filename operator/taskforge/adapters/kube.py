"""Access to the Kubernetes API through the official client, in one place.

Calls use `_preload_content=False` and plain JSON: the client's model
deserialisation costs more than the request itself on the hot path, and the
engine works on plain data anyway.

Every response is read to its end (`read_body`) or drained (`discard`): urllib3 puts a
connection back into its pool only then. An unread response leaves its connection
checked out for good, so each write opened a new TLS connection (13-19 a second in a
burst; a third of the operator's CPU went into TLS handshakes, issue 14).
tests/e2e/operator/test_api_connections.py holds 200 Job creates to a handful.

The sync client in threads, not one async client for everything: measured with
bench/api_client_ab.py (bench/RESULTS.md, 2026-11-30, "API client"), 400 Job creates 8 at a
time over keep-alive connections take the same wall time both ways (13.0 vs 14.0 ms a create
on a loaded machine), but this client costs more CPU per call (1.9 ms against 0.8 ms for one
aiohttp session: urllib3 and http.client, the thread hop, and the client's walk over the
body, 0.15 ms of it). Kept for now because every adapter, the CLI and the tests share it
(authz, results, dead letters, leases, webhooks) and an async client would be a second
library (kubernetes_asyncio) or hand-written REST calls at every call site; the hot path's
three calls (create_job, patch_status, post_event) moved to aiohttp would save about 3 ms of
CPU per single-step run, the next step if CPU per run matters more than one client.
kopf keeps its own aiohttp session for the watches: one more connection, not churn.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from taskforge import GROUP, VERSION
from taskforge.adapters import fastjson

RUNS = "workflowruns"
WORKFLOWS = "workflows"
MERGE_PATCH = "application/merge-patch+json"
FIELD_MANAGER = "taskforge-operator"

_lock = threading.Lock()
_api_client: client.ApiClient | None = None


def api_client() -> client.ApiClient:
    """One shared client: in-cluster config when in a pod, else the kubeconfig."""
    global _api_client  # noqa: PLW0603 - a process-wide connection pool is the point
    with _lock:
        if _api_client is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                config.load_kube_config()  # type: ignore[no-untyped-call]
            cfg = client.Configuration.get_default_copy()
            cfg.connection_pool_maxsize = 32
            _api_client = client.ApiClient(cfg)
        return _api_client


def read_body(response: Any) -> dict[str, Any]:
    """The JSON body of a response; reading it whole returns its connection to the pool."""
    try:
        data = response.data
    finally:
        response.release_conn()
    return dict(fastjson.loads(data)) if data else {}


def request(method: str, path: str, *, body: Any = None, query: list[tuple[str, str]] | None
            = None, content_type: str = "application/json") -> Any:
    """One call by path, through the shared client's auth and pool, without the generated
    API method: on the hot path (Job create, status patch, Event) those cost 0.66 ms of CPU
    a call validating our plain-dict body into the client's pydantic model (V1Job...) with
    `validate_call`, only to serialize it back, about half of what the sync client costs
    over a bare aiohttp call (bench/RESULTS.md, 2026-11-30). Returns the urllib3 response
    (read it with `read_body` or `discard`); non-2xx raises ApiException as the client does.
    """
    api = api_client()
    call = api.param_serialize(
        method=method, resource_path=path, query_params=query or [],
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body, auth_settings=["BearerToken"],
    )
    response: Any = api.call_api(*call)
    if not 200 <= response.status <= 299:
        response.read()
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    return response.response


def discard(response: Any) -> None:
    """Discard a response's body (without parsing it) and return its connection to the pool.

    Never skip this for a `_preload_content=False` call: see the module's docstring."""
    try:
        response.drain_conn()
    finally:
        response.release_conn()


def is_status(exc: BaseException, *codes: int) -> bool:
    return isinstance(exc, ApiException) and exc.status in codes


# What the API server says when an object is too big to store: 413 for a request body over
# its limit (3 MiB), etcd's own refusal (1.5 MiB), the gRPC client's (2 MiB), passed on as
# 500s; and 422 "Too long" for a field over its schema's limit (annotations, for instance).
_TOO_LARGE_TEXT = ("request is too large", "larger than max", "too large")


def api_message(exc: BaseException) -> str:
    """The API server's own message in an error (its Status), whole; else the error's text."""
    if not isinstance(exc, ApiException):
        return str(exc)
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
    if not body:
        return ""
    try:
        return str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        return str(body)


def describe(exc: BaseException) -> str:
    """A one-line summary of an API error: code, reason, and the server's message."""
    if not isinstance(exc, ApiException):
        return f"{type(exc).__name__}: {exc}"[:300]
    return f"{exc.status} {exc.reason}: {api_message(exc)}".strip().rstrip(":")[:300]


def is_too_large(exc: BaseException) -> bool:
    """The API server refused a write because of its size: retrying it cannot succeed."""
    if not isinstance(exc, ApiException):
        return False
    if exc.status == 413:
        return True
    text = api_message(exc).lower()
    if exc.status == 422 and "too long" in text:
        return True
    return exc.status in (422, 500) and any(t in text for t in _TOO_LARGE_TEXT)


class JobNameTakenError(RuntimeError):
    """A Job of that name exists but belongs to another run or step (names join parts with
    '-', so run `a-b` step `c` and run `a` step `b-c` collide)."""


def create_job(namespace: str, manifest: dict[str, Any]) -> bool:
    """Create a Job; False when this very Job already exists (409 is success: names are
    deterministic). A 409 for someone else's Job is an error, never silent adoption."""
    try:
        discard(request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body=manifest,
                        query=[("fieldManager", FIELD_MANAGER)]))
    except ApiException as exc:
        if exc.status != 409:
            raise
        name = manifest["metadata"]["name"]
        existing = read_body(client.BatchV1Api(api_client()).read_namespaced_job(
            name, namespace, _preload_content=False))
        mine = manifest["metadata"]["labels"]
        theirs = (existing.get("metadata") or {}).get("labels") or {}
        keys = ("taskforge.io/run", "taskforge.io/step", "taskforge.io/attempt")
        if any(theirs.get(k) != mine.get(k) for k in keys):
            raise JobNameTakenError(
                f"job {namespace}/{name} already exists for run {theirs.get(keys[0])!r} step"
                f" {theirs.get(keys[1])!r}; rename the run or the step"
            ) from exc
        return False
    return True


def delete_job(namespace: str, name: str) -> None:
    """Delete a Job and, through the garbage collector, its pods; a missing Job is fine."""
    try:
        discard(client.BatchV1Api(api_client()).delete_namespaced_job(
            name,
            namespace,
            propagation_policy="Background",
            _preload_content=False,
        ))
    except ApiException as exc:
        if exc.status != 404:
            raise


def patch_status(
    plural: str, namespace: str, name: str, patch: dict[str, Any]
) -> dict[str, Any]:
    """Merge-patch the status subresource; returns the object as the server stored it."""
    return read_body(request(
        "PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}/status",
        body=patch, query=[("fieldManager", FIELD_MANAGER)], content_type=MERGE_PATCH))


def get_object(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        response = client.CustomObjectsApi(api_client()).get_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, _preload_content=False
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return read_body(response)


def create_object(plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.CustomObjectsApi(api_client()).create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, body, _preload_content=False
    )
    return read_body(response)


def delete_object(plural: str, namespace: str, name: str) -> None:
    try:
        discard(client.CustomObjectsApi(api_client()).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, _preload_content=False
        ))
    except ApiException as exc:
        if exc.status != 404:
            raise


def read_secret_key(namespace: str, name: str, key: str) -> bytes | None:
    """One value of a Secret (for webhook keys); None when the Secret or key is missing."""
    try:
        secret = client.CoreV1Api(api_client()).read_namespaced_secret(
            name, namespace, _preload_content=False
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    data = read_body(secret).get("data") or {}
    value = data.get(key)
    return base64.b64decode(value) if value is not None else None


def set_api_client(api: client.ApiClient | None) -> client.ApiClient | None:
    """Point every function here at another cluster (tests, benchmarks); returns the previous
    client so the caller can put it back. None makes the next call load the default config."""
    global _api_client
    with _lock:
        previous, _api_client = _api_client, api
        return previous
