"""The web server's pure parts: the hub's fan-out (one rendering per event, bounded queues,
slow viewers dropped), the views of a run, and the paging token. No cluster."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from taskforge.web import live, views
from taskforge.web.delta import DetailRenderer
from taskforge.web.errors import ApiError
from taskforge.web.hub import DROPPED, RESET, Feed, Hub, Subscriber, Update
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


@pytest.mark.parametrize("steps", ["garbage", ["a"], {"a": "Succeeded", "b": None, "z": 3},
                                   {"a": {"phase": "x y"}, "b": {"phase": 7}, "z": {}}])
def test_run_detail_survives_a_wrongly_shaped_status(steps: Any) -> None:
    """status.steps is opaque JSON to the API server (no schema checks it): the page of a run
    whose status has the wrong shape still shows its graph, every step Pending."""
    run = {"metadata": {"name": "r", "namespace": "n", "uid": "u2"}, "spec": {},
           "status": {"phase": "Running", "workflowSpec": SPEC, "steps": steps}}
    detail = views.run_detail(run, views.followed_spec(run))
    assert [(s["name"], s["phase"]) for s in detail["steps"]] == [
        ("a", "Pending"), ("b", "Pending"), ("z", "Pending")]


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


def _sse_data(raw: bytes) -> dict[str, Any]:
    event, data = raw.decode().strip().split("\n")
    assert event == "event: run"
    parsed: dict[str, Any] = json.loads(data.removeprefix("data: "))
    return parsed


def test_live_run_updates_carry_only_the_changed_steps() -> None:
    spec = {"steps": [{"name": f"s{i}", "log": {"message": "x"}} for i in range(50)]}

    def run(rv: int, running: list[int], **extra: Any) -> dict[str, Any]:
        return {"metadata": {"name": "big", "namespace": "a", "uid": "u1",
                             "resourceVersion": str(rv)},
                "spec": {"workflowRef": {"name": "w"}},
                "status": {"phase": "Running", "workflowSpec": extra.get("spec", spec),
                           "steps": {f"s{i}": {"phase": "Running"} for i in running}}}

    render = DetailRenderer()
    first = render("MODIFIED", run(10, [0]))
    assert isinstance(first, bytes), "nothing to diff against yet: the whole detail"
    whole = _sse_data(first)["detail"]
    assert "run" not in whole and "dependsOn" not in whole["steps"][0]
    assert len(whole["steps"]) == 50

    second = render("MODIFIED", run(11, [0, 7]))
    assert isinstance(second, Update) and second.base == 10
    changes = _sse_data(second.changes)
    assert [s["name"] for s in changes["changes"]["steps"]] == ["s7"]
    assert changes["changes"]["summary"]["resourceVersion"] == "11"
    assert len(second.changes) < len(second.full) / 10
    assert second.for_viewer(10) is second.changes, "a viewer at the base gets the changes"
    assert second.for_viewer(9) is second.full, "any other viewer gets the whole detail"
    assert second.for_viewer(0) is second.full
    assert second.size == len(second.changes) + len(second.full)

    bigger = {"steps": [*spec["steps"], {"name": "extra", "log": {"message": "x"}}]}
    third = render("MODIFIED", run(12, [0, 7], spec=bigger))
    assert isinstance(third, bytes), "the graph changed: the whole detail"
    assert isinstance(render("DELETED", run(13, [])), bytes)
    assert isinstance(render("MODIFIED", run(14, [])), bytes), "forgotten once deleted"


def test_a_viewer_is_dropped_past_the_byte_bound() -> None:
    """256 messages of a 1,000-step run could pin ~100 MiB for one stuck viewer: the queue is
    bounded by bytes too, and a viewer that keeps up is never dropped by it."""
    payload = b"x" * 1000
    hub = Hub(KubeApi(Credentials(host="http://127.0.0.1:1")),
              {"detail": lambda kind, obj: Update(1, b"c" * 10, payload)},
              per_namespace=False, queue_size=256, queue_bytes=5000)
    feed = hub.feeds[("workflowruns", "")] = Feed("workflowruns", "", "/x")
    stuck, reader = (Subscriber(lambda o: True, "detail", asyncio.Queue(256)) for _ in range(2))
    feed.subscribers |= {stuck, reader}
    dropped_before = DROPPED._value.get()

    async def scenario() -> None:
        for i in range(4):  # 4 x 1,010 bytes: within 5,000
            hub._dispatch(feed, "MODIFIED", _run("big", i + 2))
            assert (await reader.get())[2].size == 1010  # type: ignore[union-attr]
        assert not stuck.dropped and stuck.queued_bytes == 4040 and reader.queued_bytes == 0
        hub._dispatch(feed, "MODIFIED", _run("big", 6))  # 5,050 > 5,000: dropped
        assert stuck.dropped and stuck.queued_bytes == 0
        assert await stuck.get() == RESET and stuck.queue.empty()
        assert not reader.dropped and isinstance(await reader.get(), tuple)
        huge = Hub(hub.kube, {"detail": lambda kind, obj: b"y" * 9000}, per_namespace=False,
                   queue_bytes=5000)
        alone = Subscriber(lambda o: True, "detail", asyncio.Queue(256))
        huge._put(alone, ("big", 7, b"y" * 9000))  # bigger than the bound, queue empty: kept
        assert not alone.dropped and alone.queued_bytes == 9000

    asyncio.run(scenario())
    assert DROPPED._value.get() == dropped_before + 1


def test_the_graph_of_an_unpinned_spec_is_memoised_by_content() -> None:
    """A run not started yet follows its Workflow's spec, read afresh per request: the graph
    (a pydantic validation, ~100 ms for 1,000 steps) is computed once per spec content."""
    run = {"metadata": {"name": "r", "namespace": "a", "uid": "u9"}, "status": {}}
    one, same = (views._layout_of(run, json.loads(json.dumps(SPEC))) for _ in range(2))
    assert one is same
    other = views._layout_of(run, {"steps": [{"name": "q", "log": {"message": "x"}}]})
    assert other is not one and other.order == ["q"]


def test_live_updates_of_an_unpinned_run_keep_the_snapshots_graph() -> None:
    run = {"metadata": {"name": "r", "namespace": "a", "uid": "u5", "resourceVersion": "3"},
           "spec": {"workflowRef": {"name": "w"}}, "status": {}}
    render = DetailRenderer()
    without = _sse_data(render("MODIFIED", run))  # type: ignore[arg-type]
    assert without["detail"]["steps"] == [], "nothing pinned, nothing remembered: no graph"
    render.remember_spec(run, SPEC)
    again = render("MODIFIED", {**run, "metadata": {**run["metadata"], "resourceVersion": "4"}})
    assert isinstance(again, bytes)  # the graph changed: the whole shape
    assert [s["name"] for s in _sse_data(again)["detail"]["steps"]] == ["a", "b", "z"]


def _event(name: str, involved: str, kind: str = "WorkflowRun", ns: str = "a",
           rv: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv)},
            "involvedObject": {"kind": kind, "name": involved, "namespace": ns},
            "reason": "RunSucceeded", "message": "m"}


@pytest.mark.parametrize(("event", "mine"), [
    (_event("e1", "r"), True),
    (_event("e2", "r-fetch-1-abc", "Pod"), True),
    (_event("e3", "r-fetch-1", "Job"), True),
    (_event("e4", "r-other", "ConfigMap"), False),  # named like it, not its kind of child
    (_event("e5", "rr"), False),
    (_event("e6", "r", ns="b"), False),  # another namespace's run of that name
])
def test_which_events_are_a_runs(event: dict[str, Any], mine: bool) -> None:
    assert views.event_of_run(event, "a", "r") is mine


def test_a_run_viewer_hears_its_events_on_its_one_queue() -> None:
    """A run page's stream carries the run's Events: the hub's Events feed puts them in the
    viewer's own queue (named "events/<name>", so no run of that name is confused with them),
    rendered once for all viewers; other runs' Events are not sent, and the Events watch
    stops when its last viewer leaves."""
    async def scenario() -> None:
        hub = Hub(KubeApi(Credentials(host="http://127.0.0.1:1")), live.renderers(),
                  per_namespace=False)
        hub._run = _idle  # type: ignore[method-assign]  # no API server here
        viewers = [hub.subscribe("workflowruns", "a", "detail", lambda o: False)
                   for _ in range(2)]
        for sub in viewers:
            hub.also(sub, "events", "a", "event", lambda e: views.event_of_run(e, "a", "r"))
        feed = hub.feeds[("events", "")]
        assert feed.path == "/api/v1/events" and feed.task is not None
        hub._dispatch(feed, "ADDED", _event("r.1", "r"))
        hub._dispatch(feed, "ADDED", _event("x.1", "x"))
        got = [sub.queue.get_nowait() for sub in viewers]
        assert all(sub.queue.empty() for sub in viewers)
        assert all(isinstance(m, tuple) and m[0] == "events/r.1" for m in got)
        first, second = got
        assert isinstance(first, tuple) and isinstance(second, tuple) and first[2] is second[2]
        assert isinstance(first[2], bytes) and first[2].startswith(b"event: event\n")
        assert json.loads(first[2].split(b"data: ", 1)[1])["event"]["name"] == "r.1"
        task = feed.task
        for sub in viewers:
            hub.unsubscribe("workflowruns", "a", sub)
        assert feed.task is None and not feed.subscribers
        await asyncio.sleep(0)
        assert task.cancelled() or task.done()
        await hub.close()

    asyncio.run(scenario())


async def _idle(feed: Feed) -> None:
    await asyncio.Event().wait()
