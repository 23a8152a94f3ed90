"""Benchmark of forEach fan-out in the pure engine: plan() per reconcile and the run's size.

Issue 19 asks for the size of a finished run with a 1,000-item fan-out step (target: well
under 512 KiB, like a 1,000-step run) and the planner's p99 on it. Each shape runs to the end
in a small in-process cluster, as bench/bench_engine.py does: every reconcile calls plan()
on the previous plan's status and the observed Jobs, then a batch of active Jobs finishes
(like watch events arriving). Only plan() is timed (wall clock and the thread's CPU time).

The size is the finished WorkflowRun as the operator stores it: metadata, spec with a
workflowRef, and the status written the way handlers/reconcile.py writes it
(exclude_unset, exclude_none), the pinned spec included; the largest status seen while the
run was under way is reported too (at most maxParallel items have a record then).

Usage: .venv/bin/python bench/bench_fanout.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from taskforge.api.run import WorkflowRef, WorkflowRunSpec
from taskforge.api.steps import ForEach, LogStep, RetryPolicy, ScriptStep, Step
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.actions import CreateJob, DeleteJob, Plan
from taskforge.engine.facts import ObservedJob, RunFacts, WorkflowFacts
from taskforge.engine.planner import plan

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def spec(items: int, parallel: int) -> WorkflowSpec:
    """`list` writes the items; `check` fans out over them (a script per item, its outputs a
    small JSON object); `report` reads the items' outputs. Retries as users set them."""
    return WorkflowSpec(
        steps=[
            Step(name="list", log=LogStep(message="listing")),
            Step(name="check", depends_on=["list"],
                 for_each=ForEach(items="{{ steps.list.outputs.regions | tojson }}",
                                  max_parallel=parallel),
                 retry=RetryPolicy(limit=2),
                 script=ScriptStep(source='echo "{\\"region\\": \\"{{ item }}\\", \\"n\\":'
                                          ' {{ index }}}" > "$TASKFORGE_RESULT"')),
            Step(name="report", depends_on=["check"],
                 log=LogStep(message="{{ steps.check.outputs | length }} checked")),
        ],
        outputs={"checked": "{{ steps.check.outputs | length }}"},
    )


def _result(outputs: dict[str, Any]) -> str:
    return json.dumps({"ok": True, "outputs": outputs})


def run_shape(items: int, parallel: int, batch: int, fail_every: int) -> dict[str, Any]:
    wf = spec(items, parallel)
    base = RunFacts(
        name="bench-fanout-1", namespace="bench", uid="0f6a2b1c-uid", generation=1,
        created_at=T0, spec=WorkflowRunSpec(workflow_ref=WorkflowRef(name="fan")),
        status=None, workflow=WorkflowFacts("fan", 1, "wf-uid", wf), jobs=(), now=T0,
    )
    regions = [f"region-{i:04d}" for i in range(items)]
    jobs: dict[str, ObservedJob] = {}
    status = None
    now = T0
    wall: list[float] = []
    cpu: list[float] = []
    max_status = 0
    last: Plan | None = None
    for _ in range(20_000):
        facts = replace(base, status=status, jobs=tuple(jobs.values()), now=now)
        t0, c0 = time.perf_counter(), time.thread_time()
        p = plan(facts)
        cpu.append((time.thread_time() - c0) * 1000)
        wall.append((time.perf_counter() - t0) * 1000)
        status, last = p.status, p
        size = len(json.dumps(p.status.model_dump(mode="json", by_alias=True,
                                                  exclude_unset=True, exclude_none=True)))
        max_status = max(max_status, size)
        if p.status.phase in ("Succeeded", "Failed", "Cancelled"):
            break
        for a in p.actions:
            if isinstance(a, CreateJob) and a.job_name not in jobs:
                jobs[a.job_name] = ObservedJob(a.job_name, a.step, a.attempt, "Active",
                                               item=a.item)
            elif isinstance(a, DeleteJob):
                jobs.pop(a.job_name, None)
        ended = 0
        for name, j in list(jobs.items()):
            if j.state != "Active" or ended >= batch:
                continue
            ended += 1
            if j.step == "list":
                outputs = {"regions": regions}
            elif j.item is not None:
                if fail_every and j.item % fail_every == 0 and j.attempt == 1:
                    jobs[name] = replace(j, state="Failed", exit_code=75, failure="Failed",
                                         termination_message=json.dumps(
                                             {"ok": False, "error": "flaky region"}),
                                         finished_at=now)
                    continue
                outputs = {"region": regions[j.item], "n": j.item}
            else:
                outputs = {"message": "done"}
            jobs[name] = replace(j, state="Succeeded", exit_code=0,
                                 termination_message=_result(outputs), finished_at=now)
        now += timedelta(seconds=p.requeue_after if ended == 0 and p.requeue_after else 0.05)
    assert last is not None and last.status.phase == "Succeeded", last and last.status.message
    run = {
        "apiVersion": "taskforge.io/v1alpha1", "kind": "WorkflowRun",
        "metadata": {"name": base.name, "namespace": base.namespace, "uid": base.uid,
                     "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z",
                     "resourceVersion": "123456"},
        "spec": {"workflowRef": {"name": "fan"}},
        "status": last.status.model_dump(mode="json", by_alias=True, exclude_unset=True,
                                         exclude_none=True),
    }
    size = len(json.dumps(run, separators=(",", ":")).encode())
    wall.sort()
    cpu.sort()
    check = (last.status.steps or {})["check"]
    assert check.items is not None
    return {
        "reconciles": len(wall), "median": statistics.median(wall),
        "p99": wall[int(len(wall) * 0.99) - 1] if len(wall) > 1 else wall[0],
        "cpu99": cpu[int(len(cpu) * 0.99) - 1] if len(cpu) > 1 else cpu[0],
        "max": wall[-1], "size": size / 1024, "max_status": max_status / 1024,
        "jobs": len(jobs), "outputs": last.status.outputs,
        "items": f"{check.items.succeeded}/{check.items.total}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one shape only")
    args = parser.parse_args()
    shapes = [(1000, 100, 50, 0), (1000, 1000, 200, 0), (1000, 100, 50, 10)]
    if args.quick:
        shapes = shapes[:1]
    print(f"fan-out benchmark  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  python"
          f" {platform.python_version()}  {os.cpu_count()} cpus  load"
          f" {os.getloadavg()[0]:.1f}")
    print("plan() ms per reconcile of a run with one 1,000-item forEach step (3 steps in all)")
    head = (f"{'items':>5} {'maxPar':>6} {'batch':>5} {'fail':>4}  {'reconciles':>10}"
            f" {'median':>7} {'p99':>6} {'cpu99':>6} {'max':>6}  {'run KiB':>7}"
            f" {'peak status KiB':>15}  jobs")
    print(head)
    print("-" * len(head))
    for items, parallel, batch, fail_every in shapes:
        r = run_shape(items, parallel, batch, fail_every)
        fail = f"1/{fail_every}" if fail_every else "-"
        print(f"{items:>5} {parallel:>6} {batch:>5} {fail:>4}  {r['reconciles']:>10}"
              f" {r['median']:>7.2f} {r['p99']:>6.2f} {r['cpu99']:>6.2f} {r['max']:>6.2f}"
              f"  {r['size']:>7.1f} {r['max_status']:>15.1f}  {r['jobs']}"
              f"  (items {r['items']}, outputs {r['outputs']})")
    print("fail 1/10: every 10th item's first attempt fails (retried); batch: Jobs that end"
          " between two reconciles. run KiB: the finished WorkflowRun as stored (pinned spec"
          " included); peak status: the largest status while it ran.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
