"""Which plans' statuses may wait for the next change (engine/coalesce.py), as a table.

Each row builds the plan a real reconcile would make (the planner, no mocks) over the status
of an earlier plan, and says whether its status may be held back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from enginekit import T0, at, facts, fail, job, ok, retry, step, workflow
from taskforge.api.run import WorkflowRunStatus
from taskforge.api.steps import ForEach, LogStep, Step
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.actions import Plan
from taskforge.engine.coalesce import holdable
from taskforge.engine.defer import hold_back
from taskforge.engine.planner import plan

ONE = workflow(step("a"))
CHAIN = workflow(step("a"), step("b", "a"), step("c", "b"))
FAN = workflow(Step(name="f", for_each=ForEach(items=[1, 2], max_parallel=2),
                    log=LogStep(message="{{ item }}")))


def first(spec: WorkflowSpec) -> Plan:
    return plan(facts(spec))


def _chain_handoff() -> tuple[Plan, WorkflowRunStatus | None]:
    p0 = first(CHAIN)
    return plan(facts(CHAIN, p0.status, [ok("a")], now=at(1))), p0.status


def _chain_last() -> tuple[Plan, WorkflowRunStatus | None]:
    p0 = first(CHAIN)
    p1 = plan(facts(CHAIN, p0.status, [ok("a")], now=at(1)))
    p2 = plan(facts(CHAIN, p1.status, [ok("a"), ok("b")], now=at(2)))
    return plan(facts(CHAIN, p2.status, [ok("a"), ok("b"), ok("c")], now=at(3))), p2.status


def _retry() -> tuple[Plan, WorkflowRunStatus | None]:
    spec = workflow(step("a", retry=retry(2, delay="0s")))
    p0 = first(spec)
    return plan(facts(spec, p0.status, [fail("a")], now=at(1))), p0.status


def _retry_later() -> tuple[Plan, WorkflowRunStatus | None]:
    spec = workflow(step("a", retry=retry(2, delay="30s")))
    p0 = first(spec)
    return plan(facts(spec, p0.status, [fail("a")], now=at(1))), p0.status


def _rate_limited() -> tuple[Plan, WorkflowRunStatus | None]:
    spec = workflow(step("a"), step("b"))
    held = hold_back(first(spec), step="a", run_name="run1", until=at(30), now=T0,
                     reason="rate limit x: 1 per 1m")
    return held, None


def _repeat() -> tuple[Plan, WorkflowRunStatus | None]:
    p0 = first(ONE)
    return plan(facts(ONE, p0.status, now=at(1))), p0.status


def _running_pod() -> tuple[Plan, WorkflowRunStatus | None]:
    p0 = first(ONE)
    return plan(facts(ONE, p0.status, [job("a")], now=at(1))), p0.status


def _skipped() -> tuple[Plan, WorkflowRunStatus | None]:
    spec = workflow(step("a"), step("b", "a", when="false"), step("c", "a"))
    p0 = first(spec)
    return plan(facts(spec, p0.status, [ok("a")], now=at(1))), p0.status


def _cancelled() -> tuple[Plan, WorkflowRunStatus | None]:
    spec = workflow(step("a"), step("b"))
    p0 = first(spec)
    return plan(facts(spec, p0.status, [job("a")], now=at(1), cancel=True)), p0.status


def _parallel_failure() -> tuple[Plan, WorkflowRunStatus | None]:
    spec = workflow(step("a"), step("b"), step("c", "b"))
    p0 = first(spec)
    return plan(facts(spec, p0.status, [fail("a"), ok("b")], now=at(1))), p0.status


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], tuple[Plan, WorkflowRunStatus | None]]
    holdable: bool


CASES = [
    Case("a 1-step run's start: pins the spec, launches its Job", lambda: (first(ONE), None),
         True),
    Case("a chain's hand-off: a succeeded, b launched", _chain_handoff, True),
    Case("a chain's end: the run succeeds", _chain_last, False),
    Case("a failed attempt retried at once", _retry, False),
    Case("a failed attempt retried later (its time is decided now)", _retry_later, False),
    Case("a launch held back by a rate limit (Waiting)", _rate_limited, False),
    Case("a replan before the Job is seen: nothing new", _repeat, False),
    Case("the Job's pod runs: nothing new", _running_pod, False),
    Case("a step skipped by `when` beside a launch", _skipped, False),
    Case("a cancel: Jobs deleted", _cancelled, False),
    Case("a failure beside a launch in parallel branches", _parallel_failure, False),
    Case("a forEach step's launch", lambda: (first(FAN), None), False),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_holdable(case: Case) -> None:
    p, stored = case.build()
    assert holdable(p.actions, stored, p.status) is case.holdable
