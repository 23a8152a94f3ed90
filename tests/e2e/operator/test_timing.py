"""Delayed runs and priorities through the real operator and real Redis (issue 19)."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis

from tests.e2e.operator.conftest import (
    GROUP,
    ROOT,
    VERSION,
    Kube,
    OperatorProcess,
    step_phases,
)

EXAMPLES = ROOT / "examples"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _condition(run: dict[str, Any]) -> dict[str, Any]:
    conditions = (run.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Succeeded"), {})


def _run(kube: Kube, name: str, workflow: str, **spec: Any) -> str:
    kube.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkflowRun",
                "metadata": {"name": name}, "spec": {"workflowRef": {"name": workflow}, **spec}})
    return name


def test_delayed_run_waits_scheduled_and_starts_on_time(kube: Kube) -> None:
    kube.workflow("later", {"steps": [{"name": "s", "log": {"message": "now"}}]})
    name = _run(kube, "later-run", "later", startAfter="4s")
    run = kube.wait_run(name, lambda r: _condition(r).get("reason") == "Scheduled", timeout=30)
    due = _at(run["metadata"]["creationTimestamp"]) + timedelta(seconds=4)
    assert run["status"]["phase"] == "Pending" and "startedAt" not in run["status"]
    assert run["status"]["message"] == f"scheduled to start at {due:%Y-%m-%dT%H:%M:%S}.000Z"
    assert "Scheduled" in kube.event_reasons(name, {"Scheduled"})
    done = kube.wait_run(name, timeout=60)
    assert done["status"]["phase"] == "Succeeded"
    started = _at(done["status"]["startedAt"])
    late = (started - due).total_seconds()
    print(f"delayed run started {late:.3f} s after its time")
    assert 0 <= late < 1.5, f"the wake-up was {late:.3f} s off"


def test_delayed_run_survives_an_operator_kill(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    """kill -9 while a run waits: the new operator derives the same wake-up from the spec
    (nothing else remembers it) and starts the run then, or at once if it came back later."""
    kube.workflow("later2", {"steps": [{"name": "s", "log": {"message": "now"}}]})
    name = _run(kube, "later2-run", "later2", startAfter="12s")
    run = kube.wait_run(name, lambda r: _condition(r).get("reason") == "Scheduled", timeout=30)
    due = _at(run["metadata"]["creationTimestamp"]) + timedelta(seconds=12)
    running_operator.kill()
    running_operator.start()
    back = datetime.now(UTC)
    print(f"operator back {(back - due).total_seconds():.3f} s from the due time")
    done = kube.wait_run(name, timeout=60)
    assert done["status"]["phase"] == "Succeeded"
    started = _at(done["status"]["startedAt"])
    assert started >= due, (started, due)
    late = (started - max(due, back)).total_seconds()
    print(f"restarted: started {late:.3f} s after max(due, operator back)")
    assert late < 2.0, f"the wake-up was {late:.1f} s late"


def test_start_at_in_the_past_starts_at_once(kube: Kube) -> None:
    kube.workflow("past", {"steps": [{"name": "s", "log": {"message": "x"}}]})
    name = _run(kube, "past-run", "past", startAt="2020-01-01T00:00:00Z")
    assert kube.wait_run(name, timeout=60)["status"]["phase"] == "Succeeded"


def test_priority_ten_created_last_starts_first_equal_priorities_keep_fifo(kube: Kube) -> None:
    kube.workflow("serial", {"concurrency": {"maxRuns": 1},
                             "params": [{"name": "t", "default": "1"}],
                             "steps": [{"name": "s",
                                        "script": {"source": "sleep {{ params.t }}"}}]})
    holder = _run(kube, "serial-0-holder", "serial", params={"t": "6"})
    kube.wait_run(holder, lambda r: (r.get("status") or {}).get("phase") == "Running")
    names = []
    for name, priority in (("serial-1-low", None), ("serial-2-low", 0), ("serial-3-urgent", 10)):
        names.append(_run(kube, name, "serial", **({} if priority is None else
                                                   {"priority": priority})))
        time.sleep(1.1)  # distinct creation timestamps (one-second resolution)
    runs = {n: kube.wait_run(n, timeout=90) for n in [holder, *names]}
    assert all(r["status"]["phase"] == "Succeeded" for r in runs.values())
    order = sorted(runs, key=lambda n: _at(runs[n]["status"]["startedAt"]))
    assert order == [holder, "serial-3-urgent", "serial-1-low", "serial-2-low"], order


def test_step_concurrency_waiters_go_by_priority_then_fifo(
    kube: Kube, cluster: Any, redis_server: Any
) -> None:
    """A step concurrency key of 1 is held; three runs' steps wait for it (priority 0, 0,
    then 10), and a fourth of priority 20 waits and is deleted. When the holder ends, the
    priority-10 step starts first, then the two priority-0 ones in the order they came; the
    deleted run's place left the Redis queue at once and blocked nothing."""
    step = {"name": "use", "concurrency": {"key": "one-db", "maxRunning": 1}}
    kube.workflow("db-hold", {"steps": [{**step, "script": {"source": "sleep 60"}}]})
    kube.workflow("db-use", {"steps": [{**step, "script": {"source": "sleep 1"}}]})
    holder = _run(kube, "db-0-holder", "db-hold")
    kube.wait_run(holder, lambda r: step_phases(r).get("use") == "Running", timeout=60)
    queue = f"taskforge:slot:step:{kube.namespace}/one-db:q"
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    waiters = [("db-1-low", 0), ("db-2-low", 0), ("db-3-urgent", 10), ("db-4-ghost", 20)]
    for name, priority in waiters:
        _run(kube, name, "db-use", priority=priority)
        kube.wait_run(name, lambda r: step_phases(r).get("use") == "Waiting", timeout=60)
    uids = {kube.run(n)["metadata"]["uid"]: n for n, _ in waiters}
    assert [uids[h.split("/")[0]] for h in redis.zrange(queue, 0, -1)] == [
        "db-4-ghost", "db-3-urgent", "db-1-low", "db-2-low"]
    cluster.kubectl("delete", "-n", kube.namespace, "workflowrun/db-4-ghost", "--wait=true")
    deadline = time.monotonic() + 10
    while len(redis.zrange(queue, 0, -1)) != 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(redis.zrange(queue, 0, -1)) == 3, "the deleted run's place should go at once"
    assert step_phases(kube.run(holder)).get("use") == "Running", "the key was freed too soon"
    kube.patch_run(holder, {"spec": {"cancel": True}})
    ended = _at(kube.wait_run(holder)["status"]["steps"]["use"]["finishedAt"])
    names = [n for n, _ in waiters[:3]]
    runs = {n: kube.wait_run(n, timeout=60) for n in names}
    assert all(r["status"]["phase"] == "Succeeded" for r in runs.values())
    steps = {n: r["status"]["steps"]["use"] for n, r in runs.items()}
    order = sorted(names, key=lambda n: _at(steps[n]["startedAt"]))
    handed = (_at(steps["db-3-urgent"]["startedAt"]) - ended).total_seconds()
    print(f"freed slot handed to the urgent step {handed:.2f} s after the holder ended")
    assert order == ["db-3-urgent", "db-1-low", "db-2-low"], order
    spans = sorted((_at(s["startedAt"]), _at(s["finishedAt"])) for s in steps.values())
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(spans)), f"overlap: {spans}"
    assert redis.zrange(queue, 0, -1) == []


# --- the examples (listed in test_examples.COVERED) ----------------------------------------


def test_example_delayed_run(kube: Kube, cluster: Any) -> None:
    cluster.kubectl("apply", "-n", kube.namespace, "-f", str(EXAMPLES / "delayed-run.yaml"))
    run = kube.wait_run("report-later", lambda r: _condition(r).get("reason") == "Scheduled",
                        timeout=30)
    due = _at(run["metadata"]["creationTimestamp"]) + timedelta(seconds=5)
    done = kube.wait_run("report-later", timeout=60)
    assert done["status"]["phase"] == "Succeeded"
    assert _at(done["status"]["startedAt"]) >= due


def test_example_priorities(kube: Kube, cluster: Any) -> None:
    cluster.kubectl("apply", "-n", kube.namespace, "-f", str(EXAMPLES / "priorities.yaml"))
    names = ["routine-deploy-1", "routine-deploy-2", "hotfix-deploy"]
    runs = {n: kube.wait_run(n, timeout=90) for n in names}
    assert all(r["status"]["phase"] == "Succeeded" for r in runs.values())
    started = {n: _at(r["status"]["startedAt"]) for n, r in runs.items()}
    # The first routine deploy may have started before the hotfix existed; the second
    # one, created before the hotfix too, always waits for it.
    assert started["hotfix-deploy"] < started["routine-deploy-2"], started
