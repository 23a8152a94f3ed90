"""Asking the API server what a user may do (SubjectAccessReview) and who the operator is.

Answers are cached briefly: a run's start may check the same Secret for the same user as the
run before it, and a burst of triggered runs must not become a burst of reviews. A revoked
right therefore takes effect within `TTL_SECONDS` for new runs; a run already started keeps
going (as a pod that already mounted a Secret would).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes import client

from taskforge.adapters import kube
from taskforge.engine.authority import Identity

TTL_SECONDS = 10.0
_MAX_ENTRIES = 10_000

_CacheKey = tuple[str, str, str, str, str, str]
_cache: dict[_CacheKey, tuple[float, bool]] = {}
_lock = threading.Lock()


def allowed(identity: Identity, namespace: str, verb: str, resource: str, name: str, *,
            subresource: str = "") -> bool:
    """Whether `identity` may `verb` the core-group `resource` named `name` in `namespace`
    (any name when empty; a subresource such as serviceaccounts' `token` when given).

    Blocking (the client is synchronous): call it in a worker thread.
    """
    key: _CacheKey = (identity.to_annotation(), namespace, verb, resource, name, subresource)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
    attributes = {"namespace": namespace, "verb": verb, "group": "", "resource": resource}
    if name:
        attributes["name"] = name
    if subresource:
        attributes["subresource"] = subresource
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {**identity.review_fields(), "resourceAttributes": attributes},
    }
    api: Any = client.AuthorizationV1Api(kube.api_client())
    response = api.create_subject_access_review(review, _preload_content=False)
    answer: dict[str, Any] = kube.read_body(response)
    ok = bool((answer.get("status") or {}).get("allowed"))
    with _lock:
        if len(_cache) >= _MAX_ENTRIES:
            _cache.clear()
        _cache[key] = (now + TTL_SECONDS, ok)
    return ok


def whoami() -> str | None:
    """The operator's own user name (SelfSubjectReview); None if the server cannot say.

    Runs created under this name came from the operator's triggers, so they act for the
    Workflow's last writer instead (see `engine.authority.authority`).
    """
    api: Any = client.AuthenticationV1Api(kube.api_client())
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    response = api.create_self_subject_review(review, _preload_content=False)
    answer: dict[str, Any] = kube.read_body(response)
    name = ((answer.get("status") or {}).get("userInfo") or {}).get("username")
    return str(name) if name else None


def delete_webhook_configurations(name: str) -> None:
    """Delete the mutating and validating webhook configurations of that name, if any."""
    api: Any = client.AdmissionregistrationV1Api(kube.api_client())
    for delete in (api.delete_mutating_webhook_configuration,
                   api.delete_validating_webhook_configuration):
        try:
            kube.discard(delete(name, _preload_content=False))
        except Exception as exc:
            if not kube.is_status(exc, 404):
                raise
