"""Retry by HTTP status and the attempt history, end to end (issue 12, defects 4 and 5).

A 404 is permanent by default (see test_step_http.py); `retry.on: [HTTPStatus]` with
`retry.httpStatus: [404]` retries it. The run's status then lists each attempt with
millisecond times. The stub server listens on 127.0.0.1: local agent only.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import datetime

import pytest

from tests.e2e.operator.conftest import Kube
from tests.e2e.operator.stepkit import Reply, StubServer, step_of

MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _workflow(kube: Kube, name: str, retry: dict[str, object]) -> None:
    kube.workflow(
        name,
        {
            "params": [{"name": "url"}],
            "steps": [{"name": "get", "http": {"url": "{{ params.url }}"}, "retry": retry}],
        },
    )


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.local_agent
def test_a_404_listed_in_retry_http_status_is_retried(kube: Kube, stub: StubServer) -> None:
    stub.route("/later", Reply(404, {"error": "not yet"}), Reply(404, {"error": "not yet"}),
               Reply(200, {"ready": True}))
    _workflow(kube, "notyet", {
        "limit": 3,
        "backoff": {"type": "fixed", "delay": "1s"},
        "on": ["Failed", "HTTPStatus"],
        "httpStatus": [404],
    })
    name = kube.start_run("notyet", {"url": f"{stub.url}/later"})
    run = kube.wait_run(name)
    get = step_of(run, "get")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert get["attempts"] == 3 and get["outputs"]["body"] == {"ready": True}
    assert len(stub.requests("/later")) == 3

    history = get["attemptHistory"]
    assert [(a["attempt"], a.get("exitCode"), a.get("reason")) for a in history] == [
        (1, 78, "Failed"), (2, 78, "Failed"), (3, 0, "Succeeded")]
    assert "HTTP 404" in history[0]["message"]
    for record in history:
        assert MILLIS.match(record["startedAt"]) and MILLIS.match(record["finishedAt"]), record
    assert MILLIS.match(get["startedAt"]) and MILLIS.match(run["status"]["finishedAt"])
    # Each retry waited its 1 s (never less; how much more is for bench/, not a test).
    for before, after in itertools.pairwise(history):
        gap = (_time(after["startedAt"]) - _time(before["finishedAt"])).total_seconds()
        assert gap >= 0.999, (before, after)


@pytest.mark.local_agent
def test_a_404_is_not_retried_by_default_and_says_how(kube: Kube, stub: StubServer) -> None:
    stub.route("/missing", Reply(404, {"error": "not found"}))
    _workflow(kube, "missing", {"limit": 3, "backoff": {"type": "fixed", "delay": "1s"}})
    name = kube.start_run("missing", {"url": f"{stub.url}/missing"})
    run = kube.wait_run(name)
    get = step_of(run, "get")
    assert run["status"]["phase"] == "Failed"
    assert get["attempts"] == 1 and "attemptHistory" not in get
    assert "permanent failure (HTTP 404)" in get["message"], get["message"]
    assert "retry.httpStatus" in get["message"]
    assert len(stub.requests("/missing")) == 1


def test_http_status_without_http_status_in_on_is_rejected_at_apply(kube: Kube) -> None:
    with pytest.raises(Exception, match=r"retry\.httpStatus must be set exactly when"):
        _workflow(kube, "badretry", {"limit": 1, "on": ["Failed"], "httpStatus": [404]})
