"""The webhook trigger's decisions, free of HTTP and Kubernetes: who may deliver, what runs.

The server (`taskforge.handlers.webhook_server`) does the I/O and asks this module, in order:

    webhook_of(workflow_obj, ns, name)           -> Webhook       404 unknown / not enabled
    check_content_type(content_type)                              415 not application/json
    check_length(webhook, content_length)                         413 declared too large
    authenticate(webhook, key, body, headers)                     401 missing / bad credential
    parse_body(body)                             -> JSON value    400 not JSON
    map_params(webhook, body_json, declared)     -> params        400 path missing, wrong type
    delivery_id(headers)                         -> str | None
    webhook_run_name(ns, workflow, delivery_id, nonce) -> str     deterministic per delivery
    (the server's admit(ns, workflow, run) -> DeliveryAdmission)  429 / 503, or a reservation
    webhook_run_manifest(...)                    -> WorkflowRun to create

Each check raises `RejectedError(status, reason, message)`; the message is safe to show to the
sender (it never contains the key). Authentication comes before anything that reads the body's
content, so an unauthenticated sender learns nothing about the workflow's params.

Why the run name is a hash of namespace/workflow/delivery: senders redeliver (GitHub's
"Redeliver", retries after a timeout). The same delivery id always asks for the same name, so
the API server's 409 turns a redelivery into "here is the run you already started". Without a
delivery id the server draws a random suffix (the engine has no randomness): the name is known
before the run exists, because the token reservation is bound to it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from taskforge.api.run import TriggerInfo
from taskforge.api.workflow import ParamSpec, Webhook
from taskforge.engine.params import ParamsError, resolve_params
from taskforge.engine.triggers import bounded_name, run_manifest

SIGNATURE_HEADERS = ("X-Taskforge-Signature", "X-Hub-Signature-256")
DELIVERY_HEADERS = ("X-Taskforge-Delivery", "X-GitHub-Delivery")
_SHA256_PREFIX = "sha256="
_NAME_HASH_LEN = 10


class RejectedError(Exception):
    """A delivery refused with an HTTP status; `reason` is a CamelCase word for programs."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.message, "reason": self.reason}


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that also works on a plain dict (tests, other frameworks)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def webhook_of(workflow: Mapping[str, Any] | None, namespace: str, name: str) -> Webhook:
    """The workflow's webhook settings; an unknown workflow and a disabled webhook look alike
    (404) so that probing cannot tell which workflows exist."""
    not_found = RejectedError(404, "NotFound", f"no webhook for workflow {namespace}/{name}")
    if workflow is None:
        raise not_found
    raw = ((workflow.get("spec") or {}).get("triggers") or {}).get("webhook")
    if raw is None:
        raise not_found
    try:
        webhook = Webhook.model_validate(raw)
    except ValidationError as exc:
        raise RejectedError(500, "InvalidWebhook",
                       f"spec.triggers.webhook of {namespace}/{name} is invalid: "
                       f"{exc.errors()[0]['msg']}") from exc
    if not webhook.enabled:
        raise not_found
    return webhook


def declared_params(workflow: Mapping[str, Any]) -> list[ParamSpec]:
    """Only `spec.params` is parsed: validating a 2,000-step spec per delivery would be waste."""
    raw = (workflow.get("spec") or {}).get("params") or []
    return [ParamSpec.model_validate(p) for p in raw]


def check_content_type(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise RejectedError(415, "UnsupportedMediaType",
                       f"Content-Type must be application/json, got {media or 'none'!r}")


def too_large(webhook: Webhook) -> RejectedError:
    limit = webhook.max_body_bytes
    return RejectedError(413, "BodyTooLarge", f"the body is larger than {limit} bytes")


def check_length(webhook: Webhook, content_length: int | None) -> None:
    """Refuse a declared oversize body before reading a byte of it."""
    if content_length is not None and content_length > webhook.max_body_bytes:
        raise too_large(webhook)


def authenticate(
    webhook: Webhook, key: bytes | None, body: bytes, headers: Mapping[str, str]
) -> None:
    """HMAC-SHA256 of the raw body (`sha256=<hex>`, ours or GitHub's header) or a bearer token,
    compared in constant time. An empty key is refused: anyone could sign with it."""
    if not key:
        raise RejectedError(500, "SecretUnavailable",
                       "the webhook's secret is missing or empty; ask the workflow's owner")
    if webhook.auth == "bearer":
        authz = header(headers, "Authorization") or ""
        scheme, _, token = authz.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise RejectedError(401, "MissingToken", "an Authorization: Bearer token is required")
        if not hmac.compare_digest(token.strip().encode(), key):
            raise RejectedError(401, "BadToken", "the bearer token is not valid")
        return
    given = next((v for h in SIGNATURE_HEADERS if (v := header(headers, h)) is not None), None)
    if given is None:
        raise RejectedError(401, "MissingSignature",
                       f"a {SIGNATURE_HEADERS[0]} (or {SIGNATURE_HEADERS[1]}) header is required")
    expected = _SHA256_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.strip().lower().encode(), expected.encode()):
        raise RejectedError(401, "BadSignature",
                       "the signature does not match the body (HMAC-SHA256, 'sha256=<hex>')")


def sign(key: bytes, body: bytes) -> str:
    """The signature header value a sender computes; for clients, tests and the benchmark."""
    return _SHA256_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def parse_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RejectedError(400, "InvalidJSON", f"the body is not valid JSON: {exc}") from exc


def _follow(body: Any, path: str) -> Any:
    """A dotted path through objects; a number steps into an array (`commits.0.id`)."""
    value, walked = body, list[str]()
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            where = ".".join(walked) or "the top level"
            raise KeyError(f"no {part!r} at {where}")
        walked.append(part)
    return value


def map_params(
    webhook: Webhook, body: Any, declared: list[ParamSpec]
) -> dict[str, Any] | None:
    """Params taken from the body by `paramsFromBody`, checked against the declarations now,
    so the sender gets a 400 instead of a run that fails at start."""
    mapping = webhook.params_from_body
    if not mapping:
        return None
    params: dict[str, Any] = {}
    for name, path in sorted(mapping.items()):
        try:
            params[name] = _follow(body, path)
        except KeyError as exc:
            raise RejectedError(400, "ParamNotInBody",
                           f"param {name!r}: path {path!r} not found in the body"
                           f" ({exc.args[0]})") from exc
    try:
        resolve_params(declared, params)
    except ParamsError as exc:
        raise RejectedError(400, "InvalidParams", str(exc)) from exc
    return params


@dataclass(frozen=True)
class DeliveryAdmission:
    """The rate limit's answer to one delivery. Refused: `retry_after` seconds (429), or
    `busy` (503: the limit could not be checked in time; never taken for a yes). Accepted:
    `reservation`, when a token was spent, is the proof the run carries so the operator does
    not charge it again (see taskforge.adapters.reservations)."""

    retry_after: float | None = None
    busy: bool = False
    reservation: str | None = None

    @property
    def accepted(self) -> bool:
        return self.retry_after is None and not self.busy


def delivery_id(headers: Mapping[str, str]) -> str | None:
    for name in DELIVERY_HEADERS:
        value = (header(headers, name) or "").strip()
        if value:
            return value
    return None


def webhook_run_name(
    namespace: str, workflow: str, delivery: str | None, nonce: str = ""
) -> str:
    """`{workflow}-wh-{sha256(namespace/workflow/delivery)[:10]}`; without a delivery id,
    `{workflow}-wh-{nonce}` (the server passes random lowercase hex, so every post is new)."""
    if delivery is None:
        if not nonce:
            raise ValueError("a delivery without an id needs a nonce for its run's name")
        return bounded_name(workflow, f"-wh-{nonce[:_NAME_HASH_LEN]}")
    digest = hashlib.sha256(f"{namespace}/{workflow}/{delivery}".encode()).hexdigest()
    return bounded_name(workflow, f"-wh-{digest[:_NAME_HASH_LEN]}")


def webhook_run_manifest(
    namespace: str,
    workflow: str,
    name: str,
    *,
    delivery: str | None,
    body: Any,
    params: dict[str, Any] | None,
    reservation: str | None = None,
) -> dict[str, Any]:
    """The WorkflowRun for a delivery, named `name` (see webhook_run_name), carrying the
    reservation of its already spent token if there is one."""
    trigger = TriggerInfo(
        type="webhook", delivery_id=delivery, body=body, reservation=reservation
    )
    return run_manifest(namespace, workflow, name, trigger, params)


def is_same_delivery(existing: Mapping[str, Any], workflow: str, delivery: str) -> bool:
    """After a 409: is the run in the way this delivery's run, or a foreign one of that name?"""
    spec = existing.get("spec") or {}
    return bool(
        (spec.get("workflowRef") or {}).get("name") == workflow
        and (spec.get("trigger") or {}).get("deliveryId") == delivery
    )
