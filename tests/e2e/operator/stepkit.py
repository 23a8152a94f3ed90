"""Shared helpers of the step type tests (test_step_*.py) and of test_examples.py.

Steps that talk to a server (http, slack, email) are pointed at one the test starts on
127.0.0.1, which only pods of the local node agent (host processes) can reach (on the real
node, pods reach this machine at `cluster.host_ip`): those tests are marked ``local_agent``.
Secrets are created in the test namespace and each test checks that their values never reach
the run (status and all), the Events, the Job or the pod log (`assert_never_leaked`).

Not a test module: pytest collects nothing here. A module that needs the stub HTTP server
defines its own `stub` fixture (start, yield, stop).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from kubernetes import client

from tests.e2e.operator.conftest import Kube, OperatorProcess

# --- constants -------------------------------------------------------------------------------

SLIDESHOW = {
    "slideshow": {
        "title": "Sample Slide Show",
        "author": "Yours Truly",
        "slides": [{"title": "Wake up"}, {"title": "Overview"}],
    }
}

AUTH_WITHOUT_TLS = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning"
)


# --- helpers: a stub HTTP server ----------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One canned response. `body`: JSON for anything but str; `echo`: answer with the
    request itself (method, path, headers, JSON body), as httpbin's /anything does."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    echo: bool = False


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class StubServer:
    """An HTTP server on 127.0.0.1 in a thread. Each path has a queue of replies: the first
    is used and dropped while more than one is left, so the last one repeats. On the real
    node, pods reach this machine at the node IP only: pass it as `host`
    (`cluster.host_ip`)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.received: list[Received] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                reply = stub._record(request)
                if reply.echo:
                    payload: Any = {
                        "method": request.method,
                        "path": request.path,
                        "headers": request.headers,
                        "json": json.loads(body) if body else None,
                    }
                else:
                    payload = reply.body
                if isinstance(payload, str):
                    data, ctype = payload.encode(), "text/plain; charset=utf-8"
                else:
                    data, ctype = json.dumps(payload).encode(), "application/json"
                self.send_response(reply.status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def route(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self.routes[path] = list(replies)

    def requests(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if urlsplit(r.path).path == path]

    def _record(self, request: Received) -> Reply:
        with self._lock:
            self.received.append(request)
            queue = self.routes.get(urlsplit(request.path).path)
            if not queue:
                return Reply(404, {"error": "no such route"})
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

# --- helpers: a local SMTP server ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """aiosmtpd handler: keeps every message, and whether its session had logged in."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str], bool]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        message = message_from_bytes(raw, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append(
            (envelope.mail_from, list(envelope.rcpt_tos), bool(session.authenticated))
        )
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    inbox: Inbox


def smtp_server(
    credentials: tuple[str, str] | None, host: str = "127.0.0.1"
) -> tuple[Controller, SmtpServer]:
    """aiosmtpd on a free port of `host`; with credentials, AUTH (PLAIN/LOGIN) is required.

    AUTH without TLS is allowed on purpose (`auth_require_tls=False`): the executor's
    `security: none` sends credentials in the clear, which is what the test needs to see.
    """
    inbox = Inbox()
    port = free_port()
    params: dict[str, Any] = {}
    if credentials is not None:
        user, password = credentials

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
        ) -> AuthResult:
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login == user.encode()
                and auth_data.password == password.encode()
            )
            return AuthResult(success=ok, handled=False)

        params = {"authenticator": authenticator, "auth_required": True,
                  "auth_require_tls": False}
    controller = Controller(inbox, hostname=host, port=port, **params)
    controller.start()
    return controller, SmtpServer(host, port, inbox)


# --- helpers: objects and checks -------------------------------------------------------------


def create_secret(kube: Kube, name: str, data: dict[str, str]) -> None:
    kube.core.create_namespaced_secret(
        kube.namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data),
    )


def create_config_map(kube: Kube, name: str, data: dict[str, str]) -> None:
    kube.core.create_namespaced_config_map(
        kube.namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data)
    )


def step_of(run: dict[str, Any], name: str) -> dict[str, Any]:
    step: dict[str, Any] = run["status"]["steps"][name]
    return step


def serialize(kube: Kube, obj: Any) -> str:
    return json.dumps(kube.batch.api_client.sanitize_for_serialization(obj))


def step_pods(kube: Kube, run: str, step: str | None = None) -> list[Any]:
    selector = f"taskforge.io/run={run}"
    if step is not None:
        selector += f",taskforge.io/step={step}"
    items: list[Any] = kube.core.list_namespaced_pod(
        kube.namespace, label_selector=selector
    ).items
    return items


def pod_log(kube: Kube, pod: Any) -> str:
    text: str = kube.core.read_namespaced_pod_log(
        pod.metadata.name, kube.namespace, container="step"
    )
    return text


def step_log(kube: Kube, run: str, step: str) -> str:
    pods = step_pods(kube, run, step)
    assert pods, f"no pod of step {step} in run {run}"
    return "\n".join(pod_log(kube, p) for p in pods)


def assert_never_leaked(
    kube: Kube, run: str, secrets: list[str], operator: OperatorProcess | None = None
) -> None:
    """No secret value in the run (whole object), any Event of the namespace, any Job or pod
    spec of the run, any step pod's log, or (optionally) the operator's log."""
    deadline = time.monotonic() + 5  # Events are posted asynchronously: wait for the run's end
    while not kube.event_reasons(run, set()) & {"RunSucceeded", "RunFailed"}:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    places: dict[str, str] = {"run": json.dumps(kube.run(run))}
    events = kube.core.list_namespaced_event(kube.namespace).items
    places["events"] = serialize(kube, events)
    assert any(e.involved_object.name == run for e in events), "no Events on the run"
    jobs = kube.jobs(run)
    assert jobs, "no Jobs"
    places["jobs"] = serialize(kube, jobs)
    pods = step_pods(kube, run)
    assert pods, "no pods"
    places["pods"] = serialize(kube, pods)
    logs = {p.metadata.name: pod_log(kube, p) for p in pods}
    assert all(logs.values()), f"a step pod has an empty log: {logs}"
    places["pod logs"] = "\n".join(logs.values())
    if operator is not None:
        places["operator log"] = operator.logs()
    for secret in secrets:
        for where, text in places.items():
            assert secret not in text, f"secret {secret!r} leaked into the {where}"


def secret_refs(job: Any) -> dict[str, tuple[str, str]]:
    """env name -> (secret, key) of the step container's secretKeyRef entries."""
    refs: dict[str, tuple[str, str]] = {}
    for env in job.spec.template.spec.containers[0].env or []:
        ref = env.value_from and env.value_from.secret_key_ref
        if ref is not None:
            assert env.value is None
            refs[env.name] = (ref.name, ref.key)
    return refs


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"

