"""Redis through the real operator: rate limits, concurrency slots, dead letters, outages."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import pytest
from redis import Redis

from tests.e2e.operator.conftest import Kube, OperatorProcess, step_phases


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _condition(run: dict[str, Any]) -> dict[str, Any]:
    conditions = (run.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Succeeded"), {})


def _cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "taskforge.cli.main", *args],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"})


def test_run_rate_limit_holds_runs_pending_then_starts_them(kube: Kube) -> None:
    kube.workflow("limited", {"rateLimit": {"limit": 2, "per": "6s"},
                              "steps": [{"name": "s", "log": {"message": "x"}}]})
    names = [kube.start_run("limited") for _ in range(4)]
    held: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = [kube.run(n) for n in names]
        held.update({r["metadata"]["name"]: r for r in runs
                     if _condition(r).get("reason") == "RateLimited"})
        if all(r.get("status", {}).get("phase") == "Succeeded" for r in runs):
            break
        time.sleep(0.2)
    assert len(held) >= 2, "two runs should have waited for tokens"
    for run in held.values():
        assert run["status"]["phase"] == "Pending"
        assert "waiting until" in run["status"]["message"]
    assert all(r["status"]["phase"] == "Succeeded" for r in runs)
    starts = sorted(_at(r["status"]["startedAt"]) for r in runs)
    # Two start at once; the next ones wait for tokens (one every 3 s).
    assert (starts[2] - starts[0]).total_seconds() >= 2, starts
    assert (starts[3] - starts[0]).total_seconds() >= 5, starts


def test_max_runs_starts_waiting_runs_in_creation_order(kube: Kube) -> None:
    kube.workflow("one-at-a-time", {"concurrency": {"maxRuns": 1},
                                    "steps": [{"name": "s", "script": {"source": "sleep 3"}}]})
    names = []
    for _ in range(3):
        names.append(kube.start_run("one-at-a-time"))
        time.sleep(1.1)  # distinct creation timestamps (one-second resolution)
    busy = kube.wait_run(names[2], lambda r: _condition(r).get("reason") == "ConcurrencyLimited")
    assert busy["status"]["phase"] == "Pending"
    runs = [kube.wait_run(n, timeout=90) for n in names]
    assert all(r["status"]["phase"] == "Succeeded" for r in runs)
    spans = [(_at(r["status"]["startedAt"]), _at(r["status"]["finishedAt"])) for r in runs]
    assert spans == sorted(spans), "started out of creation order"
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"overlapping runs despite maxRuns 1: {spans}"


def test_step_concurrency_key_is_shared_across_workflows(kube: Kube) -> None:
    step = {"name": "deploy", "concurrency": {"key": "prod-db", "maxRunning": 1},
            "script": {"source": "sleep 2"}}
    kube.workflow("app-a", {"steps": [step]})
    kube.workflow("app-b", {"steps": [step]})
    first, second = kube.start_run("app-a"), kube.start_run("app-b")
    waiting = kube.wait_run(second, lambda r: step_phases(r).get("deploy") == "Waiting"
                            or step_phases(kube.run(first)).get("deploy") == "Waiting")
    assert waiting is not None
    runs = [kube.wait_run(n, timeout=60) for n in (first, second)]
    assert all(r["status"]["phase"] == "Succeeded" for r in runs)
    a, b = (r["status"]["steps"]["deploy"] for r in runs)
    spans = sorted([(_at(a["startedAt"]), _at(a["finishedAt"])),
                    (_at(b["startedAt"]), _at(b["finishedAt"]))])
    assert spans[1][0] >= spans[0][1], f"the two deploys overlapped: {spans}"


def test_slot_of_a_killed_operator_comes_back_by_expiry(
    kube: Kube, running_operator: OperatorProcess, cluster: Any, redis_server: Any
) -> None:
    kube.workflow("exclusive", {"concurrency": {"maxRuns": 1},
                                "steps": [{"name": "s", "script": {"source": "sleep 60"}}]})
    holder = kube.start_run("exclusive")
    held = kube.wait_run(holder, lambda r: step_phases(r).get("s") == "Running")
    running_operator.kill()  # the slot is never released by this operator
    slot = f"taskforge:slot:run:{kube.namespace}/exclusive"
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    assert redis.zrange(slot, 0, -1) == [held["metadata"]["uid"]], "the slot should be held"
    cluster.kubectl("delete", "-n", kube.namespace, f"workflowrun/{holder}", "--wait=true")
    running_operator.start()
    waiter = kube.start_run("exclusive")
    # Nobody renews the dead holder's lease (TTL 4 s in these tests): it lapses and the
    # waiting run starts; before that it waits Pending (ConcurrencyLimited), never fails.
    started = kube.wait_run(waiter, lambda r: (r.get("status") or {}).get("phase") == "Running",
                            timeout=30)
    assert started["status"]["startedAt"]
    assert redis.zrange(slot, 0, -1) == [started["metadata"]["uid"]]
    kube.patch_run(waiter, {"spec": {"cancel": True}})
    kube.wait_run(waiter)
    deadline = time.monotonic() + 10
    while redis.zrange(slot, 0, -1) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert redis.zrange(slot, 0, -1) == [], "a cancelled run gives its slot back"


def test_dead_letter_ships_to_redis_and_cli_lists_replays_purges(
    kube: Kube, redis_server: Any
) -> None:
    kube.workflow("doomed", {"params": [{"name": "n", "type": "integer", "default": 1}],
                             "steps": [{"name": "fail", "script": {"source": "exit 78"}}]})
    name = kube.start_run("doomed", params={"n": 7})
    run = kube.wait_run(name, lambda r: ((r.get("status") or {}).get("deadLetter") or {})
                        .get("shipped") is True, timeout=60)
    letter = run["status"]["deadLetter"]
    # the ADMIN path of `taskforge dlq` (Redis directly); tests/e2e/web covers the API path
    admin = ["--redis-url", redis_server.url, "-n", kube.namespace]
    listed = _cli(redis_server.url, "dlq", "list", *admin, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    entries = [e for e in json.loads(listed.stdout) if e["run"] == name]
    assert len(entries) == 1 and entries[0]["id"] == letter["streamId"]
    entry = entries[0]
    assert entry["step"] == "fail" and entry["params"] == {"n": 7}
    assert entry["namespace"] == kube.namespace
    shown = _cli(redis_server.url, "dlq", "show", entry["id"], *admin, "-o", "json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["workflow"] == "doomed"
    replay = _cli(redis_server.url, "dlq", "replay", entry["id"], *admin,
                  "--kubeconfig", str(kube.kubeconfig))
    assert replay.returncode == 0, replay.stderr
    # "workflowrun.taskforge.io/NAME created in NS (replay of ID)"
    new_run = replay.stdout.split()[0].split("/", 1)[1]
    replayed = kube.wait_run(new_run)
    assert replayed["spec"]["params"] == {"n": 7}
    assert replayed["spec"]["trigger"]["type"] == "replay"
    purged = _cli(redis_server.url, "dlq", "purge", entry["id"], *admin)
    assert purged.returncode == 0, purged.stderr
    after = json.loads(_cli(redis_server.url, "dlq", "list", "--redis-url", redis_server.url,
                            "-A", "-o", "json").stdout)
    assert entry["id"] not in {e["id"] for e in after}


@pytest.mark.local_agent
def test_redis_outage_runs_go_on_and_dead_letters_ship_later(
    kube: Kube, redis_server: Any
) -> None:
    kube.workflow("steady", {"steps": [{"name": "s", "log": {"message": "ok"}}]})
    kube.workflow("broken", {"steps": [{"name": "s", "script": {"source": "exit 78"}}]})
    redis_server.stop()
    try:
        ok = kube.wait_run(kube.start_run("steady"), timeout=60)
        assert ok["status"]["phase"] == "Succeeded"
        failed = kube.wait_run(kube.start_run("broken"), timeout=60)
        assert failed["status"]["phase"] == "Failed"
        assert failed["status"]["deadLetter"]["shipped"] is False
    finally:
        redis_server.start()
    shipped = kube.wait_run(failed["metadata"]["name"], lambda r: r["status"]["deadLetter"]
                            .get("shipped") is True, timeout=60)
    assert shipped["status"]["deadLetter"]["streamId"]
