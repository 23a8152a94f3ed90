"""Live updates: one Kubernetes watch feeds every SSE viewer (counted by the API server's own
gauge of open watches and by the server's metric), updates reach every viewer, and a run
page's steps turn Succeeded without a reload."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from localcluster.testing import ClusterUnderTest

from tests.e2e.operator.conftest import Kube
from tests.e2e.web.conftest import Api, Users, WebServer, error_of

pytestmark = pytest.mark.local_agent
VIEWERS = 50


def apiserver_watches(cluster: ClusterUnderTest, resource: str) -> float:
    """Open WATCH requests on `resource`, by the API server's own gauge."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    for line in text.splitlines():
        if (line.startswith("apiserver_longrunning_requests{") and 'verb="WATCH"' in line
                and f'resource="{resource}"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _events(response: aiohttp.ClientResponse) -> Any:
    """(event, data) pairs of an SSE stream."""
    event, data = "message", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and data:
            yield event, json.loads(data)
            event, data = "message", ""


def test_fifty_viewers_cost_one_watch(web: WebServer, users: Users, kube: Kube,
                                      cluster: ClusterUnderTest) -> None:
    kube.workflow("quick", {"steps": [{"name": "s", "log": {"message": "x"}}]})
    denied = Api(web, users.nobody, users.namespace)("GET", "live/runs")
    assert denied.status_code == 403 and "watch workflowruns" in error_of(denied)["message"]
    url = f"{web.url}/api/v1/namespaces/{users.namespace}/live/runs"
    headers = {"Authorization": f"Bearer {users.viewer}"}

    async def scenario() -> tuple[float, float, list[float]]:
        before = apiserver_watches(cluster, "workflowruns")
        async with aiohttp.ClientSession(headers=headers) as session:
            responses = [await session.get(url) for _ in range(VIEWERS)]
            streams = [_events(r) for r in responses]
            for stream in streams:  # every viewer got its snapshot
                event, data = await asyncio.wait_for(anext(stream), 10)
                assert event == "snapshot" and data == {"items": []}
            await asyncio.sleep(1.0)  # let the API server's gauge settle
            during = apiserver_watches(cluster, "workflowruns")
            ours = web.metric("taskforge_ui_kube_watches", 'kind="workflowruns"')
            assert ours == 1.0, ours
            assert web.metric("taskforge_ui_viewers") >= VIEWERS
            created = time.monotonic()
            name = await asyncio.to_thread(kube.start_run, "quick")

            async def first_update(stream: Any) -> float:
                while True:
                    event, data = await anext(stream)
                    if event == "run" and data["run"]["name"] == name:
                        return time.monotonic() - created

            delays = await asyncio.wait_for(
                asyncio.gather(*(first_update(s) for s in streams)), 20)
            for r in responses:
                r.close()
        return before, during, delays

    before, during, delays = asyncio.run(scenario())
    # the operator's own watch is counted too; the 50 viewers add at most the hub's one
    assert during - before <= 1, (before, during)
    assert len(delays) == VIEWERS and max(delays) < 5, sorted(delays)[-5:]
    print(f"\n{VIEWERS} viewers: apiserver WATCH on workflowruns {before:.0f} -> {during:.0f};"
          f" update after create p50 {sorted(delays)[VIEWERS // 2] * 1000:.0f} ms,"
          f" max {max(delays) * 1000:.0f} ms")


def test_run_page_turns_green_live(web: WebServer, users: Users, kube: Kube) -> None:
    kube.workflow("two", {"steps": [
        {"name": "first", "script": {"source": "sleep 1"}},
        {"name": "second", "dependsOn": ["first"], "log": {"message": "done"}}]})
    name = kube.start_run("two")
    url = f"{web.url}/api/v1/namespaces/{users.namespace}/live/runs/{name}"
    missing = Api(web, users.viewer, users.namespace)("GET", "live/runs/nope")
    assert missing.status_code == 404

    async def scenario() -> list[dict[str, str]]:
        seen: list[dict[str, str]] = []
        headers = {"Authorization": f"Bearer {users.viewer}"}
        async with aiohttp.ClientSession(headers=headers) as session, session.get(url) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
            phases: dict[str, str] = {}
            async for event, data in _events(r):
                detail = data if event == "snapshot" else data.get("detail")
                if detail:  # the whole detail (no `run` object in the live shape)
                    assert "run" not in detail
                    phases = {s["name"]: s["phase"] for s in detail["steps"]}
                elif data.get("changes"):  # only the steps changed since the last message
                    detail = data["changes"]
                    phases = {**phases, **{s["name"]: s["phase"] for s in detail["steps"]}}
                else:
                    continue
                seen.append(phases)
                if detail["summary"]["phase"] == "Succeeded":
                    return seen
        return seen

    seen = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert seen[-1] == {"first": "Succeeded", "second": "Succeeded"}
    assert any(s.get("first") != "Succeeded" for s in seen[:-1]), (
        "the page saw the run in progress, then finished, on one stream")


def test_the_run_page_comes_with_its_state_and_its_stream_skips_it(
        web: WebServer, users: Users, kube: Kube) -> None:
    """The run page carries the run's state and coloured graph (for a caller who may get
    runs: RBAC as for GET runs/{name}); its stream, given the version the page holds, says
    `current` instead of sending the whole run again, and sends a snapshot otherwise."""
    kube.workflow("held", {"steps": [{"name": "only", "log": {"message": "x"}}]})
    name = kube.start_run("held")
    kube.wait_run(name)
    viewer, nobody = (Api(web, t, users.namespace) for t in (users.viewer, users.nobody))
    page = viewer("GET", f"/namespaces/{users.namespace}/runs/{name}")
    assert page.status_code == 200
    state = json.loads(page.text.split('id="run-initial">', 1)[1].split("</script>", 1)[0])
    assert [(s["name"], s["phase"]) for s in state["steps"]] == [("only", "Succeeded")]
    assert 'data-step="only" data-phase="Succeeded"' in page.text
    denied = nobody("GET", f"/namespaces/{users.namespace}/runs/{name}")
    assert denied.status_code == 200 and "run-initial" not in denied.text  # a bare shell
    assert "data-phase" not in denied.text
    rv = state["summary"]["resourceVersion"]
    url = f"{web.url}/api/v1/namespaces/{users.namespace}/live/runs/{name}"

    async def first_event(since: str) -> tuple[str, Any]:
        headers = {"Authorization": f"Bearer {users.viewer}"}
        async with aiohttp.ClientSession(headers=headers) as session, session.get(
                url, params={"rv": since}) as r:
            assert r.status == 200
            return await anext(_events(r))

    for _ in range(3):  # a late status write in between moves the run on: ask again
        event, data = asyncio.run(first_event(rv))
        if event == "current":
            break
        assert event == "snapshot" and data["summary"]["resourceVersion"] != rv
        rv = data["summary"]["resourceVersion"]
    assert (event, data) == ("current", {"resourceVersion": rv})
    event, data = asyncio.run(first_event("1"))  # an older version: the whole run
    assert event == "snapshot" and data["summary"]["resourceVersion"] == rv
