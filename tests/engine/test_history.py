"""Table tests of run-history cleanup (limits and TTL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from taskforge.api.workflow import History
from taskforge.engine.history import FinishedRun, plan_cleanup

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def runs(*specs: tuple[str, str, int]) -> list[FinishedRun]:
    return [FinishedRun(n, p, T0 + timedelta(seconds=s)) for n, p, s in specs]


CASES = [
    ("under the limits keeps all", runs(("a", "Succeeded", 1), ("b", "Failed", 2)),
     History(successful_runs=2, failed_runs=2), 10, (), None),
    ("oldest succeeded beyond the limit", runs(("a", "Succeeded", 1), ("b", "Succeeded", 2),
                                             ("c", "Succeeded", 3)),
     History(successful_runs=2), 10, ("a",), None),
    ("cancelled counts as failed", runs(("a", "Cancelled", 1), ("b", "Failed", 2)),
     History(failed_runs=1), 10, ("a",), None),
    ("limit zero deletes all of that kind", runs(("a", "Succeeded", 1), ("b", "Failed", 2)),
     History(successful_runs=0, failed_runs=5), 10, ("a",), None),
    ("ttl expired", runs(("a", "Succeeded", 0), ("b", "Succeeded", 50)),
     History(ttl_seconds_after_finished=60), 70, ("a",), 40.0),
    ("ttl not yet: requeue at the earliest expiry", runs(("a", "Failed", 0), ("b", "Failed", 5)),
     History(ttl_seconds_after_finished=60), 30, (), 30.0),
    ("default policy keeps ten", runs(*[(f"r{i:02}", "Succeeded", i) for i in range(12)]),
     None, 100, ("r00", "r01"), None),
    ("ties broken by name", runs(("a", "Succeeded", 1), ("b", "Succeeded", 1)),
     History(successful_runs=1), 10, ("a",), None),
]


@pytest.mark.parametrize(
    ("finished", "policy", "now_s", "deleted", "requeue"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plan_cleanup(
    finished: list[FinishedRun],
    policy: History | None,
    now_s: int,
    deleted: tuple[str, ...],
    requeue: float | None,
) -> None:
    result = plan_cleanup(finished, policy, T0 + timedelta(seconds=now_s))
    assert result.delete == deleted
    assert result.requeue_after == requeue


def applied(name: str, phase: str, s: int) -> FinishedRun:
    """A run applied by kubectl, Helm or a GitOps tool: no spec.trigger."""
    return FinishedRun(name, phase, T0 + timedelta(seconds=s), created_by_taskforge=False)


APPLIED_CASES = [
    ("applied runs are never deleted by the limits",
     [applied("g1", "Succeeded", 1), applied("g2", "Succeeded", 2), *runs(("t", "Succeeded", 3))],
     History(successful_runs=0), 10, ("t",), None),
    ("applied runs do not count toward the limits",
     [applied("g1", "Failed", 5), *runs(("t1", "Failed", 1), ("t2", "Failed", 2))],
     History(failed_runs=2), 10, (), None),
    ("applied runs outlive the TTL",
     [applied("g", "Succeeded", 0), *runs(("t", "Succeeded", 0))],
     History(ttl_seconds_after_finished=5), 10, ("t",), None),
    ("includeApplied: they count and go like the others",
     [applied("g1", "Succeeded", 1), applied("g2", "Succeeded", 2), *runs(("t", "Succeeded", 3))],
     History(successful_runs=1, include_applied=True), 10, ("g1", "g2"), None),
    ("includeApplied with a TTL",
     [applied("g", "Succeeded", 0)],
     History(ttl_seconds_after_finished=5, include_applied=True), 10, ("g",), None),
]


@pytest.mark.parametrize(
    ("finished", "policy", "now_s", "deleted", "requeue"),
    [c[1:] for c in APPLIED_CASES],
    ids=[c[0] for c in APPLIED_CASES],
)
def test_only_runs_taskforge_created_are_deleted_unless_opted_in(
    finished: list[FinishedRun],
    policy: History | None,
    now_s: int,
    deleted: tuple[str, ...],
    requeue: float | None,
) -> None:
    result = plan_cleanup(finished, policy, T0 + timedelta(seconds=now_s))
    assert result.delete == deleted
    assert result.requeue_after == requeue
