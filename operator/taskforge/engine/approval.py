"""Approval steps: wait, with no Job, until a person decides (spec.approvals) or time runs out.

Everything is derived from facts: the decision is in the run's spec, the wait's start and
deadline in the step's status (`startedAt`, `waitUntil`), so a restarted operator picks the
wait up where it was, and the deadline is a wake-up (requeue) at its exact instant, never a
poll. A decision given before the step is reached counts when it is.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from taskforge.api.approvals import Approval, ApprovalRecord
from taskforge.api.durations import ceil_millis, parse_duration
from taskforge.api.run import StepStatus
from taskforge.engine.observe import failed
from taskforge.engine.results import bound_message
from taskforge.engine.work import Work

AWAITING = "AwaitingApproval"
"""The run's Succeeded=Unknown reason while an approval step waits (and its Event's)."""


def is_approval(work: Work, name: str) -> bool:
    return name in work.dag.approvals


def decision(work: Work, name: str) -> Approval | None:
    return next((a for a in work.facts.spec.approvals or () if a.step == name), None)


def start(work: Work, name: str, st: StepStatus) -> None:
    """The step's dependencies are done: wait for a decision (or take one given already)."""
    config = work.dag.steps[name].approval
    assert config is not None
    deadline = None
    if config.timeout is not None:
        deadline = ceil_millis(work.now + timedelta(seconds=parse_duration(config.timeout)))
    asked = f"awaiting approval: {config.message}" if config.message else "awaiting approval"
    st = work.set(name, st, phase="Waiting", started_at=work.stamp, wait_until=deadline,
                  message=bound_message(asked))
    if decision(work, name) is None:
        until = f" (until {deadline:%Y-%m-%dT%H:%M:%SZ})" if deadline else ""
        how = f"taskforge approve {work.facts.name} {name}"
        work.emit("Normal", AWAITING, f"step {name!r} {asked}{until}; {how}")
    advance(work, name, st)


def advance(work: Work, name: str, st: StepStatus) -> None:
    """A waiting approval step: decided, timed out, or still waiting (wake at the deadline)."""
    config = work.dag.steps[name].approval
    assert config is not None
    given = decision(work, name)
    if given is not None:
        by, verified = (given.user, True) if given.user else (given.approver, False)
        record = ApprovalRecord(decision="Approved" if given.decision == "approve" else "Rejected",
                                by=by, verified=verified, at=work.stamp, reason=given.reason)
        who = by or "someone"
        why = f": {given.reason}" if given.reason else ""
        if given.decision == "approve":
            _succeed(work, name, st, record, f"approved by {who}{why}")
        else:
            failed(work, name, st, None, f"rejected by {who}{why}")
            work.set(name, work.steps[name], approval=record)
        return
    deadline = st.wait_until
    if deadline is None:
        return  # no limit: only a decision (a change of the run) moves it on
    if work.now < deadline:
        work.wakeups.append(deadline)
        return
    record = ApprovalRecord(decision="TimedOut", at=work.stamp)
    if config.on_timeout == "approve":
        _succeed(work, name, st, record, f"approved: no decision within {config.timeout}")
        return
    failed(work, name, st, None, f"no decision within {config.timeout}", failure="TimedOut")
    work.set(name, work.steps[name], approval=record)


def _succeed(work: Work, name: str, st: StepStatus, record: ApprovalRecord, why: str) -> None:
    outputs: dict[str, Any] = {"approved": True, "decision": record.decision}
    if record.by:
        outputs["by"] = record.by
    if record.reason:
        outputs["reason"] = record.reason
    work.set(name, st, phase="Succeeded", finished_at=work.stamp, wait_until=None,
             outputs=outputs, approval=record, message=bound_message(why))
    work.emit("Normal", "StepApproved", f"step {name!r} {why}")


def awaiting(work: Work) -> list[str]:
    """The approval steps still waiting for a decision, in DAG order."""
    return [n for n in work.dag.order
            if n in work.dag.approvals and work.phase[n] == "Waiting"]


def stamp_approvals(
    old: list[Any] | None, new: list[Any] | None, username: str | None
) -> list[Any] | None:
    """What the admission webhook makes of `spec.approvals` in a write (entries as dicts):
    an entry for a step the object already had is put back as it was (its reason and
    recorded user are never rewritten; a changed decision is kept so that the CRD's rule
    refuses the write), and a new entry gets `user`, the
    API server's authenticated user, whatever the client wrote there. None when the list
    is already right (no patch)."""
    if not isinstance(new, list):
        return None
    before = {e.get("step"): e for e in old or () if isinstance(e, dict)}
    out: list[Any] = []
    for entry in new:
        if not isinstance(entry, dict):
            out.append(entry)  # the schema refuses it after the webhook
            continue
        kept = before.get(entry.get("step"))
        if kept is not None:
            # A changed decision is left for the CRD's rule to refuse, loudly.
            out.append({**kept, "decision": entry.get("decision")})
            continue
        fixed = {k: v for k, v in entry.items() if k != "user"}
        if username:
            fixed["user"] = username[:253]
        out.append(fixed)
    return out if out != new else None
