"""The web server's pure parts: the hub's fan-out (one rendering per event, bounded queues,
slow viewers dropped), the views of a run, and the paging token. No cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from taskforge.web import views
from taskforge.web.errors import ApiError
from taskforge.web.hub import DROPPED, RESET, Feed, Hub, Subscriber
from taskforge.web.kubeapi import Credentials, KubeApi
from taskforge.web.reads import decode_continue, encode_continue


def _run(name: str, rv: int, ns: str = "a") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv)},
            "spec": {"workflowRef": {"name": "w"}}, "status": {"phase": "Running"}}


def test_one_rendering_per_event_and_slow_viewers_are_dropped() -> None:
    calls: list[str] = []

    def render(kind: str, obj: dict[str, Any]) -> bytes:
        calls.append(obj["metadata"]["name"])
        return f"{kind} {obj['metadata']['name']}".encode()

    hub = Hub(KubeApi(Credentials(host="http://127.0.0.1:1")), {"summary": render},
              per_namespace=False, queue_size=4)
    feed = hub.feeds[("workflowruns", "")] = Feed("workflowruns", "", "/x")

    def subscriber(ns: str) -> Subscriber:
        sub = Subscriber(lambda o, ns=ns: o["metadata"]["namespace"] == ns, "summary",
                         asyncio.Queue(4))
        feed.subscribers.add(sub)
        return sub

    fast = [subscriber("a") for _ in range(20)]
    slow, other = subscriber("a"), subscriber("b")
    dropped_before = DROPPED._value.get()
    received: list[list[bytes]] = [[] for _ in fast]
    for i in range(10):
        hub._dispatch(feed, "MODIFIED", _run(f"r{i}", i + 1))
        for sub, got in zip(fast, received, strict=True):  # these read as fast as it comes
            while not sub.queue.empty():
                msg = sub.queue.get_nowait()
                assert isinstance(msg, tuple)
                got.append(msg[2])
    assert calls == [f"r{i}" for i in range(10)], "one rendering per event for all viewers"
    assert all(got == [f"MODIFIED r{i}".encode() for i in range(10)] for got in received)
    assert slow.dropped and slow.queue.qsize() == 1 and slow.queue.get_nowait() == RESET
    assert DROPPED._value.get() == dropped_before + 1
    assert other.queue.empty(), "another namespace's viewer sees nothing"
    # the same bytes object is shared, not copied per viewer
    hub._dispatch(feed, "MODIFIED", _run("shared", 99))
    first, second = (s.queue.get_nowait() for s in fast[:2])
    assert isinstance(first, tuple) and isinstance(second, tuple) and first[2] is second[2]


SPEC = {"steps": [{"name": "b", "dependsOn": ["a"], "log": {"message": "x"}},
                  {"name": "a", "http": {"url": "http://x"}}],
        "finally": [{"name": "z", "script": {"source": "true"}}]}


@pytest.mark.parametrize(("steps", "phases"), [
    ({}, ["Pending", "Pending", "Pending"]),
    ({"a": {"phase": "Succeeded", "startedAt": "2026-01-01T00:00:00Z",
            "finishedAt": "2026-01-01T00:00:02.5Z"}, "b": {"phase": "Running"}},
     ["Succeeded", "Running", "Pending"]),
])
def test_run_detail_orders_steps_by_the_graph(steps: dict[str, Any], phases: list[str]) -> None:
    run = {"metadata": {"name": "r", "namespace": "n", "uid": "u"}, "spec": {},
           "status": {"phase": "Running", "workflowSpec": SPEC, "steps": steps}}
    detail = views.run_detail(run, views.followed_spec(run))
    assert [s["name"] for s in detail["steps"]] == ["a", "b", "z"]
    assert [s["phase"] for s in detail["steps"]] == phases
    assert [s["type"] for s in detail["steps"]] == ["http", "log", "script"]
    assert detail["edges"] == [["a", "b"]] and detail["finally"] == ["z"]
    assert detail["steps"][2]["finally"] is True
    if steps:
        assert detail["steps"][0]["durationSeconds"] == 2.5


@pytest.mark.parametrize(("token", "made_for", "error"), [
    ("garbage!", "f1", "not a token this server gave out"),
    (encode_continue("abc", "f2"), "f1", "other filters"),
    ("", "f1", "not a token this server gave out"),
])
def test_continue_tokens_are_checked(token: str, made_for: str, error: str) -> None:
    with pytest.raises(ApiError, match=error) as caught:
        decode_continue(token, made_for)
    assert caught.value.status == 400 and caught.value.field == "continue"


def test_continue_token_round_trip() -> None:
    assert decode_continue(encode_continue("k8s-token", "f1"), "f1") == "k8s-token"


@pytest.mark.parametrize(("spec", "cron", "suspended"), [
    ({"triggers": {"schedule": {"cron": "*/5 * * * *"}}}, "*/5 * * * *", False),
    ({"triggers": {"schedule": {"cron": "0 1 * * *", "suspend": True}}}, "0 1 * * *", True),
    ({"triggers": {"webhook": {}}}, None, False),
    ({"triggers": "garbage"}, None, False),
    ({"schedule": {"cron": "0 1 * * *"}}, None, False),  # not where the CRD puts it
    ({}, None, False),
])
def test_workflow_summary_reads_the_schedule_from_triggers(
        spec: dict[str, Any], cron: str | None, suspended: bool) -> None:
    summary = views.workflow_summary({"metadata": {"name": "w"}, "spec": spec})
    assert (summary["schedule"], summary["suspended"]) == (cron, suspended)


@pytest.mark.parametrize(("status", "run", "expected"), [
    ({}, None, None),
    ({"lastRun": "w-abc", "lastRunTime": "2026-11-30T21:00:00Z"}, None,
     {"name": "w-abc", "phase": None, "startedAt": None, "created": "2026-11-30T21:00:00Z"}),
    ({"lastRun": 7}, None, None),
    ({"lastRun": "w-old"}, {"metadata": {"name": "w-new", "creationTimestamp": "t2"},
                            "status": {"phase": "Running", "startedAt": "t3"}},
     {"name": "w-new", "phase": "Running", "startedAt": "t3", "created": "t2"}),
])
def test_workflow_summary_last_run(status: dict[str, Any], run: dict[str, Any] | None,
                                   expected: dict[str, Any] | None) -> None:
    wf = {"metadata": {"name": "w"}, "spec": {}, "status": status}
    assert views.workflow_summary(wf, run)["lastRun"] == expected


@pytest.mark.parametrize(("run", "trigger"), [
    ({"spec": {"workflowRef": {"name": "w"}}}, "manual"),  # kubectl create: no trigger at all
    ({"spec": {"trigger": {}}}, "manual"),
    ({"spec": {"trigger": {"type": "schedule"}}}, "schedule"),
    ({"spec": {"trigger": {"type": "retry"}}}, "retry"),
    ({"metadata": {"labels": {"taskforge.io/trigger": "webhook"}}, "spec": {}}, "webhook"),
    ({"spec": {"trigger": "garbage"}}, "manual"),
])
def test_run_summary_trigger(run: dict[str, Any], trigger: str) -> None:
    assert views.run_summary(run)["trigger"] == trigger
