"""The webhook server against a real API server: every status code, idempotent redelivery,
GitHub's headers, bearer auth, body limits, params mapped into the created run.

The operator is not needed: the test starts `start_webhook_server` itself, in a thread with
its own event loop, pointed at the `cluster` fixture through `kube.set_api_client`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from taskforge.adapters import kube
from taskforge.engine.webhook import DeliveryAdmission, sign, webhook_run_name
from taskforge.handlers.webhook_server import start_webhook_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
KEY = b"e2e-hmac-key-0123456789"
TOKEN = "e2e-bearer-token"
PR = {"action": "opened", "pull_request": {"number": 42, "head": {"ref": "fix-42"}}}


@dataclass
class Server:
    url: str
    port: int
    limited: dict[tuple[str, str], float] = field(default_factory=dict)

    def post(self, ns: str, wf: str, body: bytes, headers: dict[str, str] | None = None
             ) -> httpx.Response:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        return httpx.post(f"{self.url}/hooks/{ns}/{wf}", content=body, headers=all_headers,
                          timeout=30)


@pytest.fixture(scope="module")
def crds(cluster: Any) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s",
                    "crd/workflows.taskforge.io", "crd/workflowruns.taskforge.io")


@pytest.fixture(scope="module")
def server(cluster: Any, crds: None) -> Iterator[Server]:
    previous = kube.set_api_client(cluster.api_client())
    limited: dict[tuple[str, str], float] = {}

    async def admit(ns: str, wf: str, run: str) -> DeliveryAdmission:
        return DeliveryAdmission(retry_after=limited.get((ns, wf)))

    def lookup(ns: str, wf: str) -> dict[str, Any] | None:
        return kube.get_object(kube.WORKFLOWS, ns, wf)  # the operator passes its cache instead

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="webhook-server", daemon=True)
    thread.start()
    started = start_webhook_server(0, lookup, admit=admit, host="127.0.0.1")
    runner = asyncio.run_coroutine_threadsafe(started, loop).result(30)
    port = int(runner.addresses[0][1])
    try:
        yield Server(f"http://127.0.0.1:{port}", port, limited)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        kube.set_api_client(previous)


def apply(cluster: Any, namespace: str, *objects: dict[str, Any]) -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(items))


def setup_workflow(cluster: Any, namespace: str, name: str = "hook", *, auth: str = "hmac",
                   secret: bytes | None = KEY, **webhook: Any) -> None:
    objects: list[dict[str, Any]] = []
    if secret is not None:
        objects.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook-key"},
                        "stringData": {"key": secret.decode()}})
    objects.append({
        "apiVersion": "taskforge.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name},
        "spec": {
            "params": [{"name": "ref", "required": True},
                       {"name": "number", "type": "integer", "required": True}],
            "triggers": {"webhook": {"auth": auth,
                                     "secretRef": {"name": "hook-key", "key": "key"},
                                     "paramsFromBody": {"ref": "pull_request.head.ref",
                                                        "number": "pull_request.number"},
                                     **webhook}},
            "steps": [{"name": "say", "log": {"message": "PR {{ params.number }}"}}],
        },
    })
    apply(cluster, namespace, *objects)


def runs(cluster: Any, namespace: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "workflowruns.taskforge.io", "-n", namespace, "-o", "json")
    return list(json.loads(out.stdout)["items"])


def rejected(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["reason"] == reason and body["error"], body


def signed(body: bytes, delivery: str | None = None) -> dict[str, str]:
    headers = {"X-Taskforge-Signature": sign(KEY, body)}
    if delivery is not None:
        headers["X-Taskforge-Delivery"] = delivery
    return headers


def test_healthz(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}


def test_delivery_creates_the_run_with_params_and_body(
    server: Server, cluster: Any, namespace: str
) -> None:
    setup_workflow(cluster, namespace)
    body = json.dumps(PR).encode()
    response = server.post(namespace, "hook", body, signed(body, "delivery-1"))
    assert response.status_code == 202, response.text
    expected_name = webhook_run_name(namespace, "hook", "delivery-1")
    assert response.json() == {"run": expected_name, "namespace": namespace, "duplicate": False}
    [run] = runs(cluster, namespace)
    assert run["metadata"]["name"] == expected_name
    assert run["metadata"]["labels"] == {"taskforge.io/workflow": "hook",
                                         "taskforge.io/trigger": "webhook"}
    assert run["spec"]["workflowRef"] == {"name": "hook"}
    assert run["spec"]["params"] == {"ref": "fix-42", "number": 42}
    assert run["spec"]["trigger"] == {"type": "webhook", "deliveryId": "delivery-1", "body": PR}


def test_redelivery_returns_the_same_run(server: Server, cluster: Any, namespace: str) -> None:
    setup_workflow(cluster, namespace)
    body = json.dumps(PR).encode()
    first = server.post(namespace, "hook", body, signed(body, "same"))
    again = server.post(namespace, "hook", body, signed(body, "same"))
    assert first.status_code == again.status_code == 202
    assert again.json() == {**first.json(), "duplicate": True}
    assert len(runs(cluster, namespace)) == 1


def test_githubs_headers(server: Server, cluster: Any, namespace: str) -> None:
    setup_workflow(cluster, namespace)
    body = json.dumps(PR).encode()
    headers = {"X-Hub-Signature-256": sign(KEY, body), "X-GitHub-Delivery": "gh-123",
               "X-GitHub-Event": "pull_request"}
    response = server.post(namespace, "hook", body, headers)
    assert response.status_code == 202, response.text
    assert response.json()["run"] == webhook_run_name(namespace, "hook", "gh-123")


def test_forged_and_missing_signatures(server: Server, cluster: Any, namespace: str) -> None:
    setup_workflow(cluster, namespace)
    body = json.dumps(PR).encode()
    forged = {"X-Taskforge-Signature": sign(b"not-the-key", body)}
    rejected(server.post(namespace, "hook", body, forged), 401, "BadSignature")
    tampered = signed(body)
    rejected(server.post(namespace, "hook", body.replace(b"42", b"43"), tampered), 401,
             "BadSignature")
    rejected(server.post(namespace, "hook", body), 401, "MissingSignature")
    assert runs(cluster, namespace) == []


def test_bearer_token(server: Server, cluster: Any, namespace: str) -> None:
    setup_workflow(cluster, namespace, auth="bearer", secret=TOKEN.encode())
    body = json.dumps(PR).encode()
    good = server.post(namespace, "hook", body, {"Authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 202, good.text
    rejected(server.post(namespace, "hook", body, {"Authorization": "Bearer nope"}), 401,
             "BadToken")
    rejected(server.post(namespace, "hook", body), 401, "MissingToken")
    assert len(runs(cluster, namespace)) == 1


def test_not_found(server: Server, cluster: Any, namespace: str) -> None:
    body = b"{}"
    rejected(server.post(namespace, "nope", body, signed(body)), 404, "NotFound")
    setup_workflow(cluster, namespace, "off", enabled=False)
    rejected(server.post(namespace, "off", body, signed(body)), 404, "NotFound")
    rejected(httpx.get(f"{server.url}/hooks/{namespace}/off"), 405, "MethodNotAllowed")
    rejected(httpx.post(f"{server.url}/nowhere"), 404, "NotFound")


def test_secret_missing(server: Server, cluster: Any, namespace: str) -> None:
    setup_workflow(cluster, namespace, secret=None)
    body = json.dumps(PR).encode()
    rejected(server.post(namespace, "hook", body, signed(body)), 500, "SecretUnavailable")


def test_media_type_and_json(server: Server, cluster: Any, namespace: str) -> None:
    setup_workflow(cluster, namespace)
    form = b"payload=%7B%7D"
    response = httpx.post(f"{server.url}/hooks/{namespace}/hook", content=form,
                          headers={"Content-Type": "application/x-www-form-urlencoded",
                                   **signed(form)})
    rejected(response, 415, "UnsupportedMediaType")
    broken = b'{"pull_request": '
    rejected(server.post(namespace, "hook", broken, signed(broken)), 400, "InvalidJSON")


def test_params_mapping_errors(server: Server, cluster: Any, namespace: str) -> None:
    setup_workflow(cluster, namespace)
    no_head = json.dumps({"pull_request": {"number": 1}}).encode()
    response = server.post(namespace, "hook", no_head, signed(no_head))
    rejected(response, 400, "ParamNotInBody")
    assert "'ref'" in response.json()["error"]
    assert "pull_request.head.ref" in response.json()["error"]
    wrong = json.dumps({"pull_request": {"number": "one", "head": {"ref": "x"}}}).encode()
    rejected(server.post(namespace, "hook", wrong, signed(wrong)), 400, "InvalidParams")
    assert runs(cluster, namespace) == []


def test_rate_limited(server: Server, cluster: Any, namespace: str) -> None:
    setup_workflow(cluster, namespace)
    body = json.dumps(PR).encode()
    server.limited[(namespace, "hook")] = 7.2
    try:
        response = server.post(namespace, "hook", body, signed(body, "limited"))
        rejected(response, 429, "RateLimited")
        assert response.headers["Retry-After"] == "8"
        forged = server.post(namespace, "hook", body, {"X-Taskforge-Signature": "sha256=00"})
        rejected(forged, 401, "BadSignature")  # strangers are refused before the limiter
    finally:
        del server.limited[(namespace, "hook")]
    assert runs(cluster, namespace) == []


def test_without_delivery_id_every_post_is_a_new_run(
    server: Server, cluster: Any, namespace: str
) -> None:
    setup_workflow(cluster, namespace)
    body = json.dumps(PR).encode()
    names = {server.post(namespace, "hook", body, signed(body)).json()["run"] for _ in range(2)}
    assert len(names) == 2 and all(n.startswith("hook-wh-") for n in names)


def test_name_taken_by_a_foreign_run(server: Server, cluster: Any, namespace: str) -> None:
    setup_workflow(cluster, namespace)
    name = webhook_run_name(namespace, "hook", "squatted")
    apply(cluster, namespace, {"apiVersion": "taskforge.io/v1alpha1", "kind": "WorkflowRun",
                               "metadata": {"name": name},
                               "spec": {"workflowRef": {"name": "hook"},
                                        "params": {"ref": "x", "number": 1}}})
    body = json.dumps(PR).encode()
    rejected(server.post(namespace, "hook", body, signed(body, "squatted")), 409, "NameTaken")


def test_body_too_large(server: Server, cluster: Any, namespace: str) -> None:
    setup_workflow(cluster, namespace, maxBodyBytes=1024)
    big = json.dumps({**PR, "pad": "x" * 2000}).encode()
    rejected(server.post(namespace, "hook", big, signed(big)), 413, "BodyTooLarge")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for i in range(0, len(big), 256):
            yield big[i:i + 256]

    chunked = httpx.post(f"{server.url}/hooks/{namespace}/hook", content=chunks(),
                         headers={"Content-Type": "application/json", **signed(big)})
    rejected(chunked, 413, "BodyTooLarge")
    exact = json.dumps({**PR, "pad": "x" * (1024 - len(json.dumps({**PR, "pad": ""})))}).encode()
    assert len(exact) == 1024
    assert server.post(namespace, "hook", exact, signed(exact)).status_code == 202


def _raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_oversize_body_is_never_read(server: Server, cluster: Any, namespace: str) -> None:
    """A 100 MB body is announced but only 1 KiB is sent: the answer comes at once, and the
    connection is closed instead of waiting for (and discarding) the rest."""
    setup_workflow(cluster, namespace, maxBodyBytes=1024)
    head = (f"POST /hooks/{namespace}/hook HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\n").encode()
    declared = _raw_exchange(server.port, head + b"Content-Length: 100000000\r\n\r\n" + b"{" * 1024)
    assert declared.startswith(b"HTTP/1.1 413 ")
    chunk = b"{" * 1100
    chunked = _raw_exchange(server.port, head + b"Transfer-Encoding: chunked\r\n\r\n"
                            + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    assert chunked.startswith(b"HTTP/1.1 413 ")
    assert b'"reason": "BodyTooLarge"' in chunked
