"""The http step end to end: GET and POST against a stub server, retries, secret headers.

The stub server listens on 127.0.0.1, which only pods of the local node agent can reach:
every test here is marked ``local_agent``. See stepkit.py for the shared helpers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.operator.conftest import Kube, OperatorProcess
from tests.e2e.operator.stepkit import (
    SLIDESHOW,
    Reply,
    StubServer,
    assert_never_leaked,
    create_secret,
    secret_refs,
    step_of,
    unique,
)


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
