"""Approval decisions: what a person writes into a run (spec.approvals) and what the operator
records about it (status.steps.NAME.approval).

Who decided is only as trustworthy as its source. `user` is written by the operator's
admission webhook from the API server's authenticated user (the same identity the audit log
records) and cannot be forged or changed; `approver` is what the client says (the CLI puts
the kubeconfig user there) and is kept only as a hint when no webhook runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from taskforge.api.common import Model, StepName, cel_rule, k8s_validations, list_map
from taskforge.api.durations import Timestamp

MAX_APPROVALS = 100
_IMMUTABLE = "an approval cannot be changed or withdrawn once given"


class Approval(Model):
    """A decision on one approval step of this run."""

    step: StepName
    decision: Literal["approve", "reject"] = Field(description="approve or reject.")
    reason: str | None = Field(default=None, max_length=1024, description="Why, for people.")
    approver: str | None = Field(
        default=None,
        max_length=253,
        description="Who the client says decides (the CLI: the kubeconfig user). Recorded"
        " only when no admission webhook set user.",
    )
    user: str | None = Field(
        default=None,
        max_length=253,
        description="Set by the operator's admission webhook: the authenticated user who added"
        " this entry. Whatever a client writes here is replaced.",
    )


APPROVALS_FIELD = Field(
    default=None,
    max_length=MAX_APPROVALS,
    description="Decisions on the run's approval steps, one per step (taskforge approve /"
    " reject, or any patch RBAC allows on the run). An entry cannot be changed or removed.",
    json_schema_extra={
        **list_map("step"),
        **k8s_validations(cel_rule(
            "oldSelf.all(o, self.exists(n, n.step == o.step && n.decision == o.decision))",
            _IMMUTABLE,
        )),
    },
)


class ApprovalRecord(Model):
    """How an approval step ended: decided by whom and when, or timed out."""

    decision: Literal["Approved", "Rejected", "TimedOut"] = Field(
        description="Approved, Rejected, or TimedOut (then onTimeout decided)."
    )
    by: str | None = Field(default=None, max_length=253, description="Who decided.")
    verified: bool = Field(
        default=False,
        description="True when `by` is the user the API server authenticated (recorded by the"
        " admission webhook); false when it is only what the client wrote.",
    )
    at: Timestamp = Field(description="When the operator saw the decision (or the timeout).")
    reason: str | None = Field(default=None, max_length=1024, description="The reason given.")
