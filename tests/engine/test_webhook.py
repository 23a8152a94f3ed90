"""Table tests of the webhook trigger's pure decisions: auth, limits, names, params, manifest."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from taskforge.api.common import SecretKeyRef
from taskforge.api.workflow import ParamSpec, Webhook
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
    sign,
    webhook_of,
    webhook_run_manifest,
    webhook_run_name,
)

KEY = b"s3cret-key"
BODY = b'{"ref": "refs/heads/main", "pull_request": {"number": 7}}'
REF = SecretKeyRef(name="hook", key="token")
HMAC = Webhook(secret_ref=REF)
BEARER = Webhook(auth="bearer", secret_ref=REF)


def github_sig(key: bytes, body: bytes) -> str:
    """Written out independently of `sign`, the way GitHub documents it."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


AUTH: dict[str, tuple[Webhook, bytes | None, bytes, dict[str, str], int | None, str | None]] = {
    "hmac, our header": (HMAC, KEY, BODY, {"X-Taskforge-Signature": sign(KEY, BODY)}, None, None),
    "hmac, GitHub's header": (HMAC, KEY, BODY, {"X-Hub-Signature-256": github_sig(KEY, BODY)},
                              None, None),
    "hmac, header name in lower case": (HMAC, KEY, BODY,
                                        {"x-hub-signature-256": github_sig(KEY, BODY)}, None, None),
    "hmac, hex in upper case": (HMAC, KEY, BODY,
                                {"X-Taskforge-Signature": "sha256=" + sign(KEY, BODY)[7:].upper()},
                                None, None),
    "hmac, no signature": (HMAC, KEY, BODY, {}, 401, "MissingSignature"),
    "hmac, forged with another key": (HMAC, KEY, BODY,
                                      {"X-Taskforge-Signature": sign(b"guess", BODY)}, 401,
                                      "BadSignature"),
    "hmac, body changed after signing": (HMAC, KEY, BODY + b" ",
                                         {"X-Taskforge-Signature": sign(KEY, BODY)}, 401,
                                         "BadSignature"),
    "hmac, bare hex without sha256=": (HMAC, KEY, BODY,
                                       {"X-Taskforge-Signature": sign(KEY, BODY)[7:]}, 401,
                                       "BadSignature"),
    "hmac, a bearer token is not a signature": (HMAC, KEY, BODY,
                                                {"Authorization": "Bearer s3cret-key"}, 401,
                                                "MissingSignature"),
    "hmac, empty key refused": (HMAC, b"", BODY, {"X-Taskforge-Signature": sign(b"", BODY)}, 500,
                                "SecretUnavailable"),
    "hmac, secret missing": (HMAC, None, BODY, {"X-Taskforge-Signature": sign(KEY, BODY)}, 500,
                             "SecretUnavailable"),
    "bearer, good token": (BEARER, KEY, BODY, {"Authorization": "Bearer s3cret-key"}, None, None),
    "bearer, scheme in lower case": (BEARER, KEY, BODY, {"authorization": "bearer s3cret-key"},
                                     None, None),
    "bearer, wrong token": (BEARER, KEY, BODY, {"Authorization": "Bearer s3cret-kez"}, 401,
                            "BadToken"),
    "bearer, no header": (BEARER, KEY, BODY, {}, 401, "MissingToken"),
    "bearer, basic auth is not a token": (BEARER, KEY, BODY, {"Authorization": "Basic czM="}, 401,
                                          "MissingToken"),
}


@pytest.mark.parametrize("webhook,key,body,headers,status,reason", list(AUTH.values()),
                         ids=list(AUTH))
def test_authenticate(*, webhook: Webhook, key: bytes | None, body: bytes,
                      headers: dict[str, str], status: int | None, reason: str | None) -> None:
    if status is None:
        authenticate(webhook, key, body, headers)
        return
    with pytest.raises(RejectedError) as info:
        authenticate(webhook, key, body, headers)
    assert (info.value.status, info.value.reason) == (status, reason)
    assert KEY.decode() not in info.value.message


@pytest.mark.parametrize("content_type,ok", [
    ("application/json", True), ("application/json; charset=utf-8", True),
    ("Application/JSON", True), ("text/plain", False), (None, False),
    ("application/x-www-form-urlencoded", False),
])
def test_content_type(content_type: str | None, ok: bool) -> None:
    if ok:
        check_content_type(content_type)
    else:
        with pytest.raises(RejectedError) as info:
            check_content_type(content_type)
        assert info.value.status == 415


@pytest.mark.parametrize("length,ok", [(None, True), (100, True), (101, False)])
def test_declared_length(length: int | None, ok: bool) -> None:
    webhook = Webhook(secret_ref=REF, max_body_bytes=100)
    if ok:
        check_length(webhook, length)
    else:
        with pytest.raises(RejectedError) as info:
            check_length(webhook, length)
        assert (info.value.status, info.value.reason) == (413, "BodyTooLarge")


def workflow(webhook: dict[str, Any] | None, params: list[dict[str, Any]] | None = None
             ) -> dict[str, Any]:
    spec: dict[str, Any] = {"steps": [{"name": "a", "log": {"message": "hi"}}]}
    if webhook is not None:
        spec["triggers"] = {"webhook": webhook}
    if params is not None:
        spec["params"] = params
    return {"metadata": {"name": "wf", "namespace": "ns"}, "spec": spec}


HOOK = {"secretRef": {"name": "hook", "key": "token"}, "maxBodyBytes": 1000}


@pytest.mark.parametrize("obj,status", [
    (None, 404), (workflow(None), 404), (workflow({**HOOK, "enabled": False}), 404),
    (workflow({"enabled": True}), 500), (workflow(HOOK), None),
], ids=["unknown", "no webhook", "disabled", "invalid", "enabled"])
def test_webhook_of(obj: dict[str, Any] | None, status: int | None) -> None:
    if status is None:
        assert webhook_of(obj, "ns", "wf").max_body_bytes == 1000
        return
    with pytest.raises(RejectedError) as info:
        webhook_of(obj, "ns", "wf")
    assert info.value.status == status
    if status == 404:  # unknown and disabled look alike
        assert info.value.body() == {"error": "no webhook for workflow ns/wf", "reason": "NotFound"}


@pytest.mark.parametrize("headers,expected", [
    ({"X-Taskforge-Delivery": "d1", "X-GitHub-Delivery": "g1"}, "d1"),
    ({"x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
     "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ({"X-Taskforge-Delivery": "  "}, None),
    ({}, None),
])
def test_delivery_id(headers: dict[str, str], expected: str | None) -> None:
    assert delivery_id(headers) == expected


def test_run_names() -> None:
    name = webhook_run_name("ns", "deploy", "d1")
    digest = hashlib.sha256(b"ns/deploy/d1").hexdigest()[:10]
    assert name == f"deploy-wh-{digest}"
    assert webhook_run_name("ns", "deploy", "d1") == name
    assert webhook_run_name("other", "deploy", "d1") != name
    assert webhook_run_name("ns", "deploy", "d2") != name
    assert webhook_run_name("ns", "deploy", "d1", "0123456789") == name  # ids win over nonces
    assert webhook_run_name("ns", "deploy", None, "0123456789ab") == "deploy-wh-0123456789"
    with pytest.raises(ValueError):
        webhook_run_name("ns", "deploy", None)
    long_name = webhook_run_name("ns", "w" * 80, "d1")
    assert long_name is not None and len(long_name) == 63 and long_name.endswith(
        hashlib.sha256(f"ns/{'w' * 80}/d1".encode()).hexdigest()[:10])


PR_BODY = {"ref": "refs/heads/main", "pull_request": {"number": 7, "head": {"ref": "fix"}},
           "commits": [{"id": "abc"}], "nothing": None}
DECLARED = [ParamSpec(name="ref"), ParamSpec(name="number", type="integer"),
            ParamSpec(name="commit"), ParamSpec(name="maybe", type="object")]

PARAMS: dict[str, tuple[dict[str, str] | None, Any, Any]] = {
    "no mapping": (None, PR_BODY, None),
    "nested and indexed": ({"ref": "pull_request.head.ref", "number": "pull_request.number",
                            "commit": "commits.0.id"}, PR_BODY,
                           {"ref": "fix", "number": 7, "commit": "abc"}),
    "whole object": ({"maybe": "pull_request.head"}, PR_BODY, {"maybe": {"ref": "fix"}}),
    "missing key": ({"ref": "pull_request.base.ref"}, PR_BODY,
                    (400, "ParamNotInBody", "param 'ref': path 'pull_request.base.ref' not found"
                     " in the body (no 'base' at pull_request)")),
    "index out of range": ({"commit": "commits.3.id"}, PR_BODY,
                           (400, "ParamNotInBody", "(no '3' at commits)")),
    "body is an array": ({"ref": "ref"}, [1, 2], (400, "ParamNotInBody", "at the top level")),
    "wrong type for the declaration": ({"number": "ref"}, PR_BODY,
                                       (400, "InvalidParams", "spec.params.number: expects")),
    "null is a value, and not a string": ({"ref": "nothing"}, PR_BODY,
                                          (400, "InvalidParams", "got null")),
}


@pytest.mark.parametrize("mapping,body,expected", list(PARAMS.values()), ids=list(PARAMS))
def test_map_params(mapping: dict[str, str] | None, body: Any, expected: Any) -> None:
    webhook = Webhook(secret_ref=REF, params_from_body=mapping)
    if isinstance(expected, tuple):
        with pytest.raises(RejectedError) as info:
            map_params(webhook, body, DECLARED)
        assert (info.value.status, info.value.reason) == expected[:2]
        assert expected[2] in info.value.message
    else:
        assert map_params(webhook, body, DECLARED) == expected


def test_declared_params() -> None:
    obj = workflow(HOOK, [{"name": "ref", "type": "string", "required": True}])
    assert declared_params(obj) == [ParamSpec(name="ref", required=True)]


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b""])
def test_parse_body_rejects(raw: bytes) -> None:
    with pytest.raises(RejectedError) as info:
        parse_body(raw)
    assert (info.value.status, info.value.reason) == (400, "InvalidJSON")


def test_manifest() -> None:
    name = webhook_run_name("ns", "deploy", "d1")
    m = webhook_run_manifest("ns", "deploy", name, delivery="d1", body=PR_BODY,
                             params={"ref": "fix"})
    assert m["metadata"] == {
        "name": webhook_run_name("ns", "deploy", "d1"), "namespace": "ns",
        "labels": {"taskforge.io/workflow": "deploy", "taskforge.io/trigger": "webhook"},
    }
    assert m["spec"]["workflowRef"] == {"name": "deploy"}
    assert m["spec"]["params"] == {"ref": "fix"}
    assert m["spec"]["trigger"] == {"type": "webhook", "deliveryId": "d1", "body": PR_BODY}
    assert is_same_delivery(m, "deploy", "d1")
    assert not is_same_delivery(m, "deploy", "d2")
    assert not is_same_delivery(m, "other", "d1")


def test_manifest_without_delivery_is_named_by_the_nonce() -> None:
    name = webhook_run_name("ns", "deploy", None, "abcdef0123")
    m = webhook_run_manifest("ns", "deploy", name, delivery=None, body={"a": 1}, params=None)
    assert m["metadata"]["name"] == "deploy-wh-abcdef0123"
    assert "deliveryId" not in m["spec"]["trigger"] and "params" not in m["spec"]


def test_manifest_carries_the_reservation() -> None:
    name = webhook_run_name("ns", "deploy", "d1")
    m = webhook_run_manifest("ns", "deploy", name, delivery="d1", body={}, params=None,
                             reservation="r" * 24)
    assert m["spec"]["trigger"]["reservation"] == "r" * 24


@pytest.mark.parametrize("admission,accepted", [
    (DeliveryAdmission(), True),
    (DeliveryAdmission(reservation="x" * 24), True),
    (DeliveryAdmission(retry_after=2.0), False),
    (DeliveryAdmission(retry_after=1.0, busy=True), False),
])
def test_delivery_admission(admission: DeliveryAdmission, accepted: bool) -> None:
    assert admission.accepted is accepted
