"""The operator's /metrics, /readyz and JSON logs, read from the real operator during and after
real runs (issue 16).

Each test has its own namespace, and every run metric carries the namespace label, so the
series a test reads start at zero whatever ran before. Steps use the local agent's instant
image (a container that "exits" at once, as the benchmarks do) or busybox for a failure.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.operator.conftest import Kube, OperatorProcess

pytestmark = pytest.mark.local_agent  # the instant image exists only on the local agent

INSTANT = {"image": "taskforge.io/bench-instant"}
FAILING = {"image": "busybox", "command": ["sh", "-c", "exit 3"]}

Samples = list[tuple[str, dict[str, str], float]]


def scrape(op: OperatorProcess) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{op.http_port}/metrics", timeout=10).text
    return [(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
    return sum(v for n, ls, v in samples if n == name and labels.items() <= ls.items())


def eventually(check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def wait_all(kube: Kube, runs: list[str], timeout: float = 120) -> dict[str, str]:
    """Each run's terminal phase (runs listed once per poll, not fetched one by one)."""
    deadline = time.monotonic() + timeout
    while True:
        items = kube.custom.list_namespaced_custom_object(
            "taskforge.io", "v1alpha1", kube.namespace, "workflowruns")["items"]
        phases = {r["metadata"]["name"]: (r.get("status") or {}).get("phase") for r in items}
        done = {r: phases.get(r) for r in runs
                if phases.get(r) in ("Succeeded", "Failed", "Cancelled")}
        if len(done) == len(runs):
            return {k: str(v) for k, v in done.items()}
        assert time.monotonic() < deadline, f"{len(runs) - len(done)} runs not finished"
        time.sleep(0.5)


def test_counts_and_histograms_match_the_runs_made(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    ns = kube.namespace
    kube.workflow("pair", {"steps": [{"name": "a", "container": INSTANT},
                                     {"name": "b", "dependsOn": ["a"], "container": INSTANT}]})
    kube.workflow("flaky", {"steps": [{"name": "f", "container": FAILING, "retry": {
        "limit": 1, "backoff": {"type": "fixed", "delay": "1s"}}}]})
    runs = [kube.start_run("pair") for _ in range(5)]
    flaky = kube.start_run("flaky")
    during = scrape(running_operator)  # while they run: counters never ahead of the runs
    assert value(during, "taskforge_runs_started_total", namespace=ns) <= 6
    assert value(during, "taskforge_runs_finished_total", namespace=ns) <= 6
    phases = wait_all(kube, [*runs, flaky])
    assert phases == {**dict.fromkeys(runs, "Succeeded"), flaky: "Failed"}
    jobs = kube.batch.list_namespaced_job(ns).items

    def after() -> Samples:
        s = scrape(running_operator)
        pair, fl = {"namespace": ns, "workflow": "pair"}, {"namespace": ns, "workflow": "flaky"}
        assert value(s, "taskforge_runs_started_total", **pair, trigger="manual") == 5
        assert value(s, "taskforge_runs_finished_total", **pair, phase="Succeeded") == 5
        assert value(s, "taskforge_runs_finished_total", **fl, phase="Failed") == 1
        assert value(s, "taskforge_run_duration_seconds_count", **pair) == 5
        assert value(s, "taskforge_step_attempts_total", **pair, type="container",
                     outcome="succeeded") == 10
        assert value(s, "taskforge_step_attempts_total", **fl, outcome="retryable") == 2
        # One attempt per Job, and each attempt's duration observed once.
        assert value(s, "taskforge_step_attempts_total", namespace=ns) == len(jobs) == 12
        assert value(s, "taskforge_step_attempt_duration_seconds_count", namespace=ns) == 12
        assert value(s, "taskforge_steps_finished_total", **pair, phase="Succeeded") == 10
        assert value(s, "taskforge_steps_finished_total", **fl, phase="Failed") == 1
        assert value(s, "taskforge_step_handoff_seconds_count", namespace=ns) == 5  # b after a
        assert value(s, "taskforge_run_first_job_seconds_count", namespace=ns) == 6
        assert value(s, "taskforge_dead_letters_recorded_total", **fl) == 1
        assert value(s, "taskforge_dead_letters_shipped_total", **fl) == 1  # Redis is up
        return s

    samples = eventually(after)
    assert not [n for n, _, _ in samples if n.endswith("_created")]
    handoffs = value(samples, "taskforge_step_handoff_seconds_sum", namespace=ns)
    assert 0 <= handoffs < 5 * 5  # each hand-off well under 5 s on the agent
    assert value(samples, "taskforge_leader") == 1
    assert value(samples, "taskforge_webhook_requests_total") >= 0  # declared, scrapeable


def _series(samples: Samples, ns: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {(n, tuple(sorted(ls.items()))) for n, ls, _ in samples if ls.get("namespace") == ns}


def test_label_sets_stay_bounded_over_200_runs_with_distinct_names(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    ns = kube.namespace
    kube.workflow("many", {"steps": [{"name": "only", "container": INSTANT}]})
    first = [kube.start_run("many", name=f"many-{uuid.uuid4().hex[:8]}") for _ in range(10)]
    wait_all(kube, first)
    early = eventually(lambda: _counted(running_operator, ns, 10))
    rest = [kube.start_run("many", name=f"many-{uuid.uuid4().hex[:8]}") for _ in range(190)]
    wait_all(kube, rest, timeout=240)
    late = eventually(lambda: _counted(running_operator, ns, 200), timeout=30)
    assert _series(late, ns) == _series(early, ns), "new series appeared with new runs"
    every_value = {v for _, ls, _ in late for v in ls.values()}
    assert not every_value & {*first, *rest}, "a run name became a label value"
    assert len(_series(late, ns)) < 60


def _counted(op: OperatorProcess, ns: str, runs: int) -> Samples:
    s = scrape(op)
    assert value(s, "taskforge_runs_finished_total", namespace=ns, phase="Succeeded") == runs
    assert value(s, "taskforge_step_attempt_duration_seconds_count", namespace=ns) == runs
    return s


def test_health_and_readiness_on_the_one_port(running_operator: OperatorProcess) -> None:
    base = f"http://127.0.0.1:{running_operator.http_port}"
    assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    ready = eventually(lambda: _ready(base))
    assert ready["checks"] == {"started": True, "cacheSynced": True, "redis": True,
                               "admission": True}
    assert httpx.post(f"{base}/hooks/none/none", json={}, timeout=5).status_code == 404
    assert value(scrape(running_operator), "taskforge_webhook_requests_total", code="404") >= 1


def _ready(base: str) -> dict[str, Any]:
    answer = httpx.get(f"{base}/readyz", timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture
def json_operator(running_operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """The session operator restarted with JSON logs, and back to text afterwards."""
    with running_operator.restarted_with({"TASKFORGE_LOG_FORMAT": "json"}) as restarted:
        yield restarted


def test_json_logs_carry_the_runs_fields(json_operator: OperatorProcess, kube: Kube) -> None:
    kube.workflow("logged", {"steps": [{"name": "f", "container": FAILING}]})
    run = kube.start_run("logged")
    assert kube.wait_run(run)["status"]["phase"] == "Failed"

    def lines() -> list[dict[str, Any]]:
        found = []
        for raw in json_operator.log_path.read_text().splitlines():
            line = json.loads(raw)  # every line is JSON, kopf's and aiohttp's too
            assert {"time", "level", "logger", "message"} <= line.keys(), line
            if line.get("run") == run:
                found.append(line)
        messages = [x["message"] for x in found]
        assert any(m.startswith("run failed") for m in messages), messages
        return found

    about = eventually(lines)
    for line in about:
        assert (line["namespace"], line["workflow"]) == (kube.namespace, "logged"), line
    (ended,) = [x for x in about if x["message"].startswith("step attempt ended")]
    # exit 3 is a retryable failure; with no retry policy the run fails on the first.
    assert (ended["step"], ended["attempt"], ended["outcome"]) == ("f", 1, "retryable")
    assert not [x for x in about if "/healthz" in x["message"] or "/readyz" in x["message"]]
