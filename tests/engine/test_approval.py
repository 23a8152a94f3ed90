"""Approval steps in the pure planner: waiting with no Job, decisions from spec.approvals,
the timeout as an exact wake-up, restarts, and validation of Job-only fields. No mocks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from enginekit import T0, at, cond, created, events, facts, ok, phases, st, step, workflow
from hypothesis import given
from hypothesis import strategies as hs
from pydantic import ValidationError
from taskforge.api.approvals import Approval
from taskforge.api.run import WorkflowRunSpec, WorkflowRunStatus
from taskforge.api.steps import ApprovalStep, Step
from taskforge.engine.actions import Plan
from taskforge.engine.approval import stamp_approvals
from taskforge.engine.facts import RunFacts
from taskforge.engine.planner import plan


def gate(name: str = "gate", *deps: str, **config: Any) -> Step:
    return Step(name=name, depends_on=list(deps) or None, approval=ApprovalStep(**config))


SPEC = workflow(step("build"), gate("gate", "build", message="ship it?", timeout="1h"),
                step("deploy", "gate"))


def run_facts(status: WorkflowRunStatus | None, now: float, *approvals: Approval,
              spec: Any = SPEC, **kw: Any) -> RunFacts:
    f = facts(spec, status=status, now=at(now), **kw)
    return replace(f, spec=f.spec.model_copy(update={"approvals": list(approvals) or None}))


def waiting(spec: Any = SPEC) -> Plan:
    """The run with build done and the gate waiting since t=10."""
    first = plan(run_facts(None, 0, spec=spec))
    return plan(replace(run_facts(first.status, 10, spec=spec), jobs=(ok("build"),)))


def test_gate_waits_with_no_job_says_why_and_wakes_at_the_timeout() -> None:
    p = waiting()
    assert phases(p) == {"build": "Succeeded", "gate": "Waiting", "deploy": "Pending"}
    assert created(p) == []
    gate_st = st(p, "gate")
    assert gate_st.message == "awaiting approval: ship it?" and gate_st.attempts == 0
    assert gate_st.started_at == at(10) and gate_st.wait_until == at(3610)
    assert cond(p) == ("Unknown", "AwaitingApproval")
    assert p.status.message == "waiting for approval of step 'gate'"
    assert p.status.phase == "Running"
    assert ("AwaitingApproval", None) in events(p)
    assert p.requeue_after == 3600.0
    again = plan(run_facts(p.status, 20))  # an idle replan: no event, same wake-up
    assert again.actions == () and again.status == p.status and again.requeue_after == 3590.0


def test_approval_by_the_webhook_user_succeeds_and_the_next_step_starts() -> None:
    p = waiting()
    given_ = Approval(step="gate", decision="approve", reason="lgtm", approver="me",
                      user="alice@example.com")
    done = plan(run_facts(p.status, 30, given_))
    gate_st = st(done, "gate")
    assert gate_st.phase == "Succeeded" and gate_st.finished_at == at(30)
    assert gate_st.approval is not None
    assert (gate_st.approval.decision, gate_st.approval.by, gate_st.approval.verified) == (
        "Approved", "alice@example.com", True)
    assert gate_st.outputs == {"approved": True, "decision": "Approved",
                               "by": "alice@example.com", "reason": "lgtm"}
    assert created(done) == [("deploy", 1)]
    assert cond(done) == ("Unknown", "Running")


def test_without_a_webhook_user_the_claimed_approver_is_kept_unverified() -> None:
    done = plan(run_facts(waiting().status, 30,
                          Approval(step="gate", decision="approve", approver="bob")))
    record = st(done, "gate").approval
    assert record is not None and (record.by, record.verified) == ("bob", False)


def test_rejection_fails_the_step_and_the_run_with_the_reason() -> None:
    p = waiting()
    no = Approval(step="gate", decision="reject", reason="not on a Friday", user="carol")
    done = plan(run_facts(p.status, 40, no))
    gate_st = st(done, "gate")
    assert gate_st.phase == "Failed" and gate_st.failure == "Failed"
    assert gate_st.message == "rejected by carol: not on a Friday"
    assert gate_st.approval is not None and gate_st.approval.decision == "Rejected"
    assert done.status.phase == "Failed" and phases(done)["deploy"] == "Skipped"
    assert done.status.dead_letter is not None and done.status.dead_letter.step == "gate"


@pytest.mark.parametrize(
    ("on_timeout", "phase", "failure"),
    [("fail", "Failed", "TimedOut"), ("approve", "Succeeded", None)],
)
def test_timeout_at_its_exact_instant(on_timeout: str, phase: str, failure: str | None) -> None:
    spec = workflow(step("build"), gate("gate", "build", timeout="90s", on_timeout=on_timeout),
                    step("deploy", "gate"))
    p = waiting(spec)
    assert p.requeue_after == 90.0
    early = plan(run_facts(p.status, 99.999, spec=spec))
    assert st(early, "gate").phase == "Waiting"
    late = plan(run_facts(p.status, 100, spec=spec))
    gate_st = st(late, "gate")
    assert gate_st.phase == phase and gate_st.failure == failure
    assert gate_st.approval is not None and gate_st.approval.decision == "TimedOut"


def test_no_timeout_waits_forever_without_a_wake_up() -> None:
    spec = workflow(gate("gate"))
    p = plan(run_facts(None, 0, spec=spec))
    assert st(p, "gate").phase == "Waiting" and p.requeue_after is None


def test_a_decision_given_before_the_step_is_reached_counts_then() -> None:
    early = Approval(step="gate", decision="approve", user="dan")
    first = plan(run_facts(None, 0, early))
    assert st(first, "gate").phase == "Pending"
    p = plan(replace(run_facts(first.status, 5, early), jobs=(ok("build"),)))
    assert st(p, "gate").phase == "Succeeded"
    assert "AwaitingApproval" not in [r for r, _ in events(p)]
    assert created(p) == [("deploy", 1)]


def test_restart_keeps_the_wait_and_its_deadline() -> None:
    """Status alone: a new operator replans the stored status and gets the same wait."""
    p = waiting()
    stored = WorkflowRunStatus.model_validate(p.status.model_dump(mode="json", by_alias=True))
    again = plan(run_facts(stored, 1000))
    assert st(again, "gate").phase == "Waiting" and again.requeue_after == 2610.0
    assert again.actions == ()


def test_cancel_while_waiting_cancels_the_gate() -> None:
    done = plan(run_facts(waiting().status, 50, cancel=True))
    assert done.status.phase == "Cancelled" and st(done, "gate").phase == "Cancelled"


def test_approval_of_a_step_that_is_no_approval_changes_nothing() -> None:
    p = waiting()
    stray = Approval(step="deploy", decision="approve", user="eve")
    again = plan(run_facts(p.status, 30, stray))
    assert st(again, "gate").phase == "Waiting" and created(again) == []


@pytest.mark.parametrize(
    "extra",
    [{"retry": {"limit": 1}}, {"timeout": "5m"}, {"pod": {"serviceAccountName": "x"}},
     {"rateLimit": {"key": "k", "limit": 1, "per": "1m"}},
     {"concurrency": {"key": "k", "maxRunning": 1}},
     {"forEach": {"items": [1, 2]}}, {"log": {"message": "x"}}],
)
def test_an_approval_with_a_job_only_field_is_refused(extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=r"approval|exactly one"):
        Step.model_validate({"name": "gate", "approval": {"message": "ok?"}, **extra})


def test_approvals_are_one_per_step_names_validated() -> None:
    with pytest.raises(ValidationError, match="step"):
        WorkflowRunSpec.model_validate({"workflowRef": {"name": "wf"},
                                        "approvals": [{"step": "Bad_Name", "decision": "approve"}]})
    with pytest.raises(ValidationError, match="decision"):
        WorkflowRunSpec.model_validate({"workflowRef": {"name": "wf"},
                                        "approvals": [{"step": "gate", "decision": "maybe"}]})


@given(hs.floats(0, 7200), hs.sampled_from(["approve", "reject", None]))
def test_a_replan_from_the_same_facts_decides_the_same(now: float, choice: str | None) -> None:
    """Decisions depend on facts alone: planning the result again changes nothing more."""
    p = waiting()
    given_ = [] if choice is None else [Approval(step="gate", decision=choice, user="u")]
    first = plan(run_facts(p.status, 10 + now, *given_))
    second = plan(run_facts(first.status, 10 + now, *given_))
    assert phases(second)["gate"] == phases(first)["gate"]
    assert st(second, "gate") == st(first, "gate")
    assert (st(first, "gate").started_at or T0) >= T0


A = {"step": "a", "decision": "approve"}
B = {"step": "b", "decision": "reject", "reason": "no"}


@pytest.mark.parametrize(
    ("old", "new", "user", "expected"),
    [
        (None, None, "u", None),
        (None, [A], "alice", [{**A, "user": "alice"}]),
        (None, [{**A, "user": "forged"}], "alice", [{**A, "user": "alice"}]),
        (None, [{**A, "user": "forged"}], None, [A]),  # no authenticated user: no claim kept
        ([{**A, "user": "alice"}], [{**A, "user": "alice"}, B], "bob",
         [{**A, "user": "alice"}, {**B, "user": "bob"}]),
        # an old entry is put back as it was, whatever the write changed in it
        ([{**A, "user": "alice"}], [{**A, "user": "mallory", "reason": "edited"}], "mallory",
         [{**A, "user": "alice"}]),
        ([{**A, "user": "alice"}], [{**A, "user": "alice"}], "bob", None),  # unchanged: no patch
        # a changed decision stays changed, for the CRD's rule to refuse
        ([{**A, "user": "alice"}], [{**A, "decision": "reject"}], "bob",
         [{**A, "user": "alice", "decision": "reject"}]),
        (None, ["junk"], "u", None),
        (None, "junk", "u", None),
    ],
)
def test_stamp_approvals(old: Any, new: Any, user: str | None, expected: Any) -> None:
    assert stamp_approvals(old, new, user) == expected
