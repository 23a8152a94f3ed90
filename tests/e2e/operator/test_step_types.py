"""Every step type end to end: a Workflow through the real operator, Jobs, pods, results.

Steps that talk to a server (http, slack, email) are pointed at one the test starts on
127.0.0.1, which only pods of the local node agent (host processes) can reach: those tests
are marked ``local_agent``. Secrets are created in the test namespace and each test checks
that their values never reach the run (status and all), the Events, the Job or the pod log.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
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
from taskforge.api.steps import STEP_TYPES

from tests.e2e.operator.conftest import Kube, OperatorProcess

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
    is used and dropped while more than one is left, so the last one repeats."""

    def __init__(self) -> None:
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

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
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


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


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


def smtp_server(credentials: tuple[str, str] | None) -> tuple[Controller, SmtpServer]:
    """aiosmtpd on a free loopback port; with credentials, AUTH (PLAIN/LOGIN) is required.

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
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **params)
    controller.start()
    return controller, SmtpServer("127.0.0.1", port, inbox)


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
    kube.event_reasons(run, {"StepSucceeded"}, timeout=5)  # Events are posted asynchronously
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


# --- http ------------------------------------------------------------------------------------

SLIDESHOW = {
    "slideshow": {
        "title": "Sample Slide Show",
        "author": "Yours Truly",
        "slides": [{"title": "Wake up"}, {"title": "Overview"}],
    }
}


@pytest.mark.local_agent
def test_http_get_json_then_post_a_body_rendered_from_its_outputs(
    kube: Kube, stub: StubServer
) -> None:
    stub.route("/data", Reply(200, SLIDESHOW, headers={"X-Request-Id": "req-7"}))
    stub.route("/post", Reply(201, {"created": True}))
    kube.workflow(
        "fetchpost",
        {
            "params": [{"name": "source"}, {"name": "target"}],
            "steps": [
                {
                    "name": "fetch",
                    "http": {
                        "url": "{{ params.source }}",
                        "query": {"page": "1"},
                        "headers": [{"name": "Accept", "value": "application/json"}],
                        "responseHeaders": ["X-Request-Id", "Content-Type"],
                    },
                },
                {
                    "name": "post",
                    "dependsOn": ["fetch"],
                    "when": "steps.fetch.outputs.status == 200",
                    "http": {
                        "method": "POST",
                        "url": "{{ params.target }}",
                        "json": {
                            "title": "{{ steps.fetch.outputs.body.slideshow.title }}",
                            "second": "{{ steps.fetch.outputs.body.slideshow.slides[1].title }}",
                            "run": "{{ run.name }}",
                            "nested": {
                                "list": ["{{ steps.fetch.outputs.headers['X-Request-Id'] }}"]
                            },
                            "number": 3,
                        },
                        "successCodes": [200, 201],
                    },
                },
            ],
        },
    )
    name = kube.start_run(
        "fetchpost", {"source": f"{stub.url}/data", "target": f"{stub.url}/post"}
    )
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    fetch = step_of(run, "fetch")
    assert fetch["outputs"]["status"] == 200
    assert fetch["outputs"]["body"] == SLIDESHOW
    assert fetch["outputs"]["headers"] == {
        "X-Request-Id": "req-7",
        "Content-Type": "application/json",
    }
    assert step_of(run, "post")["outputs"] == {
        "status": 201, "headers": {}, "body": {"created": True},
    }
    [got] = stub.requests("/data")
    assert got.method == "GET" and got.path == "/data?page=1"
    assert got.headers["accept"] == "application/json"
    [posted] = stub.requests("/post")
    assert posted.method == "POST"
    assert posted.headers["content-type"] == "application/json"
    assert posted.json() == {
        "title": "Sample Slide Show",
        "second": "Overview",
        "run": name,
        "nested": {"list": ["req-7"]},
        "number": 3,
    }


@pytest.mark.local_agent
def test_http_404_fails_permanently_despite_retry(kube: Kube, stub: StubServer) -> None:
    stub.route("/missing", Reply(404, {"error": "not found"}))
    kube.workflow(
        "notfound",
        {
            "params": [{"name": "url"}],
            "steps": [
                {
                    "name": "get",
                    "http": {"url": "{{ params.url }}"},
                    "retry": {"limit": 3, "backoff": {"type": "fixed", "delay": "1s"}},
                }
            ],
        },
    )
    name = kube.start_run("notfound", {"url": f"{stub.url}/missing"})
    run = kube.wait_run(name)
    get = step_of(run, "get")
    assert run["status"]["phase"] == "Failed"
    assert get["phase"] == "Failed" and get["attempts"] == 1, get
    assert get["failure"] == "Failed"
    assert get["exitCode"] == 78
    assert "HTTP 404" in get["message"], get["message"]
    assert len(kube.jobs(name)) == 1
    assert len(stub.requests("/missing")) == 1
    assert run["status"]["deadLetter"]["step"] == "get"
    assert "StepRetrying" not in kube.event_reasons(name, {"StepFailed"})


@pytest.mark.local_agent
def test_http_503_then_200_is_retried_and_succeeds(kube: Kube, stub: StubServer) -> None:
    stub.route("/flaky", Reply(503, "busy"), Reply(200, {"ok": 1}))
    kube.workflow(
        "unavailable",
        {
            "params": [{"name": "url"}],
            "steps": [
                {
                    "name": "get",
                    "http": {"url": "{{ params.url }}"},
                    "retry": {"limit": 3, "backoff": {"type": "fixed", "delay": "1s"}},
                }
            ],
        },
    )
    name = kube.start_run("unavailable", {"url": f"{stub.url}/flaky"})
    run = kube.wait_run(name)
    get = step_of(run, "get")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert get["attempts"] == 2
    assert get["outputs"]["body"] == {"ok": 1}
    assert len(stub.requests("/flaky")) == 2
    assert sorted(j.metadata.labels["taskforge.io/attempt"] for j in kube.jobs(name)) == [
        "1", "2",
    ]
    assert "StepRetrying" in kube.event_reasons(name, {"StepRetrying", "StepSucceeded"})


@pytest.mark.local_agent
def test_http_secret_header_reaches_the_server_and_nowhere_else(
    kube: Kube, stub: StubServer, running_operator: OperatorProcess
) -> None:
    token = unique("Bearer tok")
    create_secret(kube, "api-token", {"token": token})
    stub.route("/echo", Reply(200, echo=True))
    kube.workflow(
        "secrethdr",
        {
            "params": [{"name": "url"}],
            "steps": [
                {
                    "name": "call",
                    "http": {
                        "method": "POST",
                        "url": "{{ params.url }}",
                        "headers": [
                            {"name": "X-Plain", "value": "plain"},
                            {
                                "name": "Authorization",
                                "valueFrom": {
                                    "secretKeyRef": {"name": "api-token", "key": "token"}
                                },
                            },
                        ],
                        "json": {"hello": "world"},
                    },
                },
                # A later step sees only what status holds: the redacted echo.
                {
                    "name": "after",
                    "dependsOn": ["call"],
                    "log": {"message": "{{ steps.call.outputs.body.headers.authorization }}"},
                },
            ],
        },
    )
    name = kube.start_run("secrethdr", {"url": f"{stub.url}/echo"})
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    [received] = stub.requests("/echo")
    assert received.headers["authorization"] == token
    assert received.headers["x-plain"] == "plain"
    # The server echoed the header back; the executor redacted it from the outputs.
    echoed = step_of(run, "call")["outputs"]["body"]
    assert echoed["headers"]["authorization"] == "[redacted]"
    assert echoed["headers"]["x-plain"] == "plain"
    assert step_of(run, "after")["outputs"]["message"] == "[redacted]"
    # The Job carries only the reference, under the env name the contract defines.
    call_job = next(j for j in kube.jobs(name) if j.metadata.labels["taskforge.io/step"] == "call")
    assert secret_refs(call_job) == {"TASKFORGE_SECRET_HEADER_1": ("api-token", "token")}
    assert_never_leaked(kube, name, [token], running_operator)


# --- script ----------------------------------------------------------------------------------


def test_script_sh_bash_python_results_and_stdout_tail(kube: Kube) -> None:
    kube.workflow(
        "scripts",
        {
            "params": [{"name": "who", "default": "e2e"}],
            "steps": [
                {
                    "name": "sh",
                    "script": {
                        "language": "sh",
                        "env": [{"name": "GREETING", "value": "hi {{ params.who }}"}],
                        "source": 'echo "$GREETING from sh"\n'
                        'printf \'{"shell": "sh", "attempt": %d}\' "$TASKFORGE_ATTEMPT"'
                        ' > "$TASKFORGE_RESULT"\n',
                    },
                },
                {
                    "name": "bash",
                    "script": {
                        "language": "bash",
                        "source": "set -euo pipefail\n"
                        "words=(alpha beta gamma)\n"
                        'set -- "${words[@]}"\n'
                        'echo "bash: ${words[*]}"\n'
                        'echo "{\\"count\\": $#, \\"last\\": \\"${words[2]}\\"}"'
                        ' > "$TASKFORGE_RESULT"\n',
                    },
                },
                {
                    "name": "python",
                    "dependsOn": ["sh", "bash"],
                    "script": {
                        "language": "python",
                        "source": "import json, os, sys\n"
                        "for i in range(300):\n"
                        "    print(f'line {i:03d} ' + 'x' * 20)\n"
                        "print('to stderr', file=sys.stderr)\n"
                        "json.dump({'words': {{ steps.bash.outputs.count }},"
                        " 'shell': '{{ steps.sh.outputs.shell }}',"
                        " 'python': sys.version_info[:2]},"
                        " open(os.environ['TASKFORGE_RESULT'], 'w'))\n",
                    },
                },
            ],
        },
    )
    name = kube.start_run("scripts")
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    sh, bash, python = (step_of(run, s)["outputs"] for s in ("sh", "bash", "python"))
    assert sh == {"exitCode": 0, "stdout": "hi e2e from sh\n", "shell": "sh", "attempt": 1}
    assert bash == {
        "exitCode": 0, "stdout": "bash: alpha beta gamma\n", "count": 3, "last": "gamma",
    }
    assert python["exitCode"] == 0
    assert python["words"] == 3 and python["shell"] == "sh" and python["python"] == [3, 11]
    # Only the tail of stdout (1 KiB), not stderr.
    tail = python["stdout"]
    assert tail.endswith("line 299 " + "x" * 20 + "\n")
    assert "line 000" not in tail and "to stderr" not in tail
    assert 900 < len(tail.encode()) <= 1024
    log = step_log(kube, name, "python")
    assert "line 000" in log and "to stderr" in log


def test_script_env_from_secret_and_config_map(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    password = unique("pw")
    create_secret(kube, "db", {"password": password})
    create_config_map(kube, "settings", {"region": "eu-west-1"})
    digest = hashlib.sha256(password.encode()).hexdigest()
    kube.workflow(
        "scriptenv",
        {
            "steps": [
                {
                    "name": "check",
                    "script": {
                        "language": "python",
                        "env": [
                            {"name": "LITERAL", "value": "lit"},
                            {
                                "name": "DB_PASSWORD",
                                "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
                            },
                            {
                                "name": "REGION",
                                "valueFrom": {
                                    "configMapKeyRef": {"name": "settings", "key": "region"}
                                },
                            },
                        ],
                        "source": "import hashlib, json, os\n"
                        "pw = os.environ['DB_PASSWORD']\n"
                        "print('the password is', pw)\n"
                        "json.dump({'sha': hashlib.sha256(pw.encode()).hexdigest(),"
                        " 'region': os.environ['REGION'], 'literal': os.environ['LITERAL'],"
                        " 'echo': pw},"
                        " open(os.environ['TASKFORGE_RESULT'], 'w'))\n",
                    },
                }
            ]
        },
    )
    name = kube.start_run("scriptenv")
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    outputs = step_of(run, "check")["outputs"]
    assert outputs["sha"] == digest  # the secret reached the script, unchanged
    assert outputs["region"] == "eu-west-1" and outputs["literal"] == "lit"
    assert outputs["echo"] == "[redacted]"
    assert outputs["stdout"] == "the password is [redacted]\n"
    [job] = kube.jobs(name)
    assert secret_refs(job) == {"DB_PASSWORD": ("db", "password")}
    env = {e.name: e for e in job.spec.template.spec.containers[0].env}
    assert env["REGION"].value_from.config_map_key_ref.name == "settings"
    assert_never_leaked(kube, name, [password], running_operator)


def test_dollar_signs_in_step_config_reach_the_executor_unchanged(kube: Kube) -> None:
    """`$$` (a shell's PID, a price) and `$(X)` are plain text in a step's config: the executor
    must see them as written, as with any other character."""
    text = "pid $$ and $(TASKFORGE_RUN) and $$(escaped) cost $5"
    kube.workflow(
        "dollars",
        {
            "steps": [
                {"name": "say", "log": {"message": text}},
                {"name": "sh", "script": {"source": "cat <<'EOF'\n" + text + "\nEOF\n"}},
            ]
        },
    )
    run = kube.wait_run(kube.start_run("dollars"))
    assert step_of(run, "say").get("outputs") == {"message": text}, run["status"]
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert step_of(run, "sh")["outputs"]["stdout"] == text + "\n"


# --- log -------------------------------------------------------------------------------------


def test_log_all_levels_rendered_from_params(kube: Kube) -> None:
    levels = ["debug", "info", "warning", "error"]
    kube.workflow(
        "levels",
        {
            "params": [
                {"name": "component", "default": "billing"},
                {"name": "percent", "type": "integer", "default": 85},
            ],
            "steps": [
                {
                    "name": level,
                    "log": {
                        "level": level,
                        "message": f"{{{{ params.component }}}} {level}:"
                        " disk {{ params.percent }}% full in {{ run.name }}",
                    },
                }
                for level in levels
            ]
            + [{"name": "default", "log": {"message": "{{ params.component | upper }}"}}],
        },
    )
    name = kube.start_run("levels", {"component": "payments", "percent": 91})
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    for level in levels:
        message = f"payments {level}: disk 91% full in {name}"
        assert step_of(run, level)["outputs"] == {"message": message}
        assert f"{level.upper()} {message}\n" in step_log(kube, name, level)
    assert step_of(run, "default")["outputs"] == {"message": "PAYMENTS"}
    assert "INFO PAYMENTS\n" in step_log(kube, name, "default")


# --- container -------------------------------------------------------------------------------

TERMINATION_SCRIPT = """\
import json, os, sys
n = int(sys.argv[1])
print("counting to", n, "as", os.environ["LABEL"])
outputs = {"squares": [i * i for i in range(n)], "label": os.environ["LABEL"]}
with open("/dev/termination-log", "w") as f:
    json.dump({"ok": True, "outputs": outputs}, f)
"""


def test_container_termination_message_becomes_outputs(kube: Kube) -> None:
    kube.workflow(
        "container",
        {
            "params": [{"name": "n", "type": "integer", "default": 3}],
            "steps": [
                {
                    "name": "squares",
                    "container": {
                        "image": "python:3.11-slim",
                        "command": ["python", "-c"],
                        "args": [TERMINATION_SCRIPT, "{{ params.n }}"],
                        "env": [{"name": "LABEL", "value": "n={{ params.n }}"}],
                    },
                },
                {
                    "name": "sum",
                    "dependsOn": ["squares"],
                    "log": {"message": "{{ steps.squares.outputs.squares | sum }}"},
                },
            ],
        },
    )
    name = kube.start_run("container", {"n": 5})
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    squares = step_of(run, "squares")
    assert squares["exitCode"] == 0
    assert squares["outputs"] == {"squares": [0, 1, 4, 9, 16], "label": "n=5"}
    assert step_of(run, "sum")["outputs"]["message"] == "30"
    job = next(j for j in kube.jobs(name) if j.metadata.labels["taskforge.io/step"] == "squares")
    container = job.spec.template.spec.containers[0]
    assert container.image == "python:3.11-slim"
    assert container.command == ["python", "-c"] and container.args[1] == "5"
    assert "counting to 5 as n=5" in step_log(kube, name, "squares")


def test_container_image_that_cannot_run_is_a_pod_failure(kube: Kube) -> None:
    image = "registry.example/unknown:1"
    kube.workflow(
        "badimage",
        {"steps": [{"name": "run", "timeout": "2m",
                    "container": {"image": image, "command": ["true"]}}]},
    )
    name = kube.start_run("badimage")
    run = kube.wait_run(name, timeout=150)
    step = step_of(run, "run")
    assert run["status"]["phase"] == "Failed"
    assert step["phase"] == "Failed" and step["failure"] == "PodFailure", step
    assert image in step["message"], step["message"]
    assert step["attempts"] == 1


# --- slack -----------------------------------------------------------------------------------


@pytest.mark.local_agent
def test_slack_posts_text_and_blocks_to_the_secret_webhook(
    kube: Kube, stub: StubServer, running_operator: OperatorProcess
) -> None:
    token = uuid.uuid4().hex
    path = f"/services/T0E2E/B0E2E/{token}"
    webhook_url = f"{stub.url}{path}"
    stub.route(path, Reply(200, "ok"))
    create_secret(kube, "slack-webhook", {"url": webhook_url})
    kube.workflow(
        "slack",
        {
            "params": [{"name": "note", "default": "deploy finished"}],
            "steps": [
                {
                    "name": "version",
                    "script": {"source": "echo '{\"version\": \"1.4.2\"}' > \"$TASKFORGE_RESULT\""},
                },
                {
                    "name": "notify",
                    "dependsOn": ["version"],
                    "slack": {
                        "webhookUrlFrom": {"name": "slack-webhook", "key": "url"},
                        "text": "{{ params.note }}: version {{ steps.version.outputs.version }}",
                        "blocks": [
                            {
                                "type": "section",
                                "text": {
                                    "type": "mrkdwn",
                                    "text": "*{{ params.note }}*\nrun `{{ run.name }}`",
                                },
                            }
                        ],
                    },
                },
            ],
        },
    )
    name = kube.start_run("slack", {"note": "shipped"})
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert step_of(run, "notify")["outputs"] == {"status": 200, "response": "ok"}
    [posted] = stub.requests(path)
    assert posted.method == "POST"
    assert posted.json() == {
        "text": "shipped: version 1.4.2",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*shipped*\nrun `{name}`"}}
        ],
    }
    notify = next(j for j in kube.jobs(name) if j.metadata.labels["taskforge.io/step"] == "notify")
    assert secret_refs(notify) == {
        "TASKFORGE_SECRET_SLACK_WEBHOOK_URL": ("slack-webhook", "url"),
    }
    assert_never_leaked(kube, name, [webhook_url, token], running_operator)


@pytest.mark.local_agent
def test_slack_rejection_names_the_webhook_not_its_url(kube: Kube, stub: StubServer) -> None:
    token = uuid.uuid4().hex
    path = f"/services/T0E2E/B0E2E/{token}"
    stub.route(path, Reply(403, f"invalid_token {path}"))
    create_secret(kube, "slack-webhook", {"url": f"{stub.url}{path}"})
    kube.workflow(
        "slackbad",
        {"steps": [{"name": "notify", "retry": {"limit": 2},
                    "slack": {"webhookUrlFrom": {"name": "slack-webhook", "key": "url"},
                              "text": "hi"}}]},
    )
    name = kube.start_run("slackbad")
    run = kube.wait_run(name)
    step = step_of(run, "notify")
    assert run["status"]["phase"] == "Failed"
    assert step["attempts"] == 1  # 403 is permanent
    assert "the Slack webhook: HTTP 403" in step["message"], step["message"]
    assert token not in json.dumps(kube.run(name))
    kube.event_reasons(name, {"StepFailed"})
    assert token not in serialize(kube, kube.events(name))


# --- email -----------------------------------------------------------------------------------

AUTH_WITHOUT_TLS = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning"
)


@pytest.mark.local_agent
@AUTH_WITHOUT_TLS
def test_email_with_smtp_auth_from_a_secret(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    user, password = "robot@e2e.example", unique("smtp-pw")
    controller, smtp = smtp_server((user, password))
    try:
        create_secret(kube, "smtp", {"username": user, "password": password})
        kube.workflow(
            "mail",
            {
                "params": [{"name": "to", "default": "ops@e2e.example"}],
                "steps": [
                    {
                        "name": "usage",
                        "script": {"source": "echo '{\"percent\": 42}' > \"$TASKFORGE_RESULT\""},
                    },
                    {
                        "name": "send-report",
                        "dependsOn": ["usage"],
                        "email": {
                            "host": smtp.host,
                            "port": smtp.port,
                            "security": "none",
                            "usernameFrom": {"name": "smtp", "key": "username"},
                            "passwordFrom": {"name": "smtp", "key": "password"},
                            "from": "taskforge@e2e.example",
                            "to": ["{{ params.to }}", "audit@e2e.example"],
                            "subject": "Disk usage ({{ run.name }})",
                            "body": "Hello,\n\nthe disk is"
                            " {{ steps.usage.outputs.percent }}% full.\n",
                        },
                    },
                ],
            },
        )
        name = kube.start_run("mail", {"to": "dev@e2e.example"})
        run = kube.wait_run(name)
        assert run["status"]["phase"] == "Succeeded", run["status"]
        [message] = smtp.inbox.messages
        [(mail_from, rcpt_tos, authenticated)] = smtp.inbox.envelopes
        assert authenticated
        assert mail_from == "taskforge@e2e.example"
        assert rcpt_tos == ["dev@e2e.example", "audit@e2e.example"]
        assert message["Subject"] == f"Disk usage ({name})"
        assert message["To"] == "dev@e2e.example, audit@e2e.example"
        body = message.get_content().replace("\r\n", "\n")  # SMTP lines end in CRLF
        assert body == "Hello,\n\nthe disk is 42% full.\n"
        outputs = step_of(run, "send-report")["outputs"]
        assert outputs == {
            "messageId": message["Message-ID"],
            "to": ["dev@e2e.example", "audit@e2e.example"],
        }
        job = next(
            j for j in kube.jobs(name) if j.metadata.labels["taskforge.io/step"] == "send-report"
        )
        assert secret_refs(job) == {
            "TASKFORGE_SECRET_SMTP_USERNAME": ("smtp", "username"),
            "TASKFORGE_SECRET_SMTP_PASSWORD": ("smtp", "password"),
        }
        assert_never_leaked(kube, name, [password], running_operator)
    finally:
        controller.stop()


@pytest.mark.local_agent
@AUTH_WITHOUT_TLS
def test_email_wrong_password_is_a_permanent_failure(kube: Kube) -> None:
    controller, smtp = smtp_server(("robot@e2e.example", "right"))
    wrong = unique("wrong-pw")
    try:
        create_secret(kube, "smtp", {"username": "robot@e2e.example", "password": wrong})
        kube.workflow(
            "mailbad",
            {
                "steps": [
                    {
                        "name": "send",
                        "retry": {"limit": 2, "backoff": {"delay": "1s"}},
                        "email": {
                            "host": smtp.host, "port": smtp.port, "security": "none",
                            "usernameFrom": {"name": "smtp", "key": "username"},
                            "passwordFrom": {"name": "smtp", "key": "password"},
                            "from": "taskforge@e2e.example", "to": ["ops@e2e.example"],
                            "subject": "s", "body": "b",
                        },
                    }
                ]
            },
        )
        name = kube.start_run("mailbad")
        run = kube.wait_run(name)
        step = step_of(run, "send")
        assert run["status"]["phase"] == "Failed"
        assert step["attempts"] == 1, step  # 535 authentication failed: a 5xx is permanent
        assert "535" in step["message"], step["message"]
        assert smtp.inbox.messages == []
        assert wrong not in json.dumps(kube.run(name))
    finally:
        controller.stop()


def test_every_step_type_is_covered() -> None:
    """A new step type needs a test here: compare with the API's list."""
    covered = {"http", "script", "log", "container", "slack", "email"}
    assert set(STEP_TYPES) == covered
