"""`taskforge approve RUN STEP` and `taskforge reject RUN STEP --reason ...`: a decision on an
approval step, written as an entry of the run's spec.approvals.

That is an ordinary edit of the run, so RBAC decides who may approve (`patch workflowruns`),
like any other change. Who did it is recorded by the operator's admission webhook from the
API server's authenticated user; `approver`, which this command also fills in (the user the
API server says we are, from a SelfSubjectReview), is only used when no webhook runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskforge.cli.options import RUNS, ContextOpt, KubeconfigOpt, NamespaceOpt

if TYPE_CHECKING:
    from taskforge.cli.client import Cluster

RunArg = Annotated[str, typer.Argument(metavar="RUN", help="The run.", show_default=False)]
StepArg = Annotated[str, typer.Argument(metavar="STEP", help="Its approval step.",
                                        show_default=False)]
_TERMINAL = ("Succeeded", "Failed", "Skipped", "Cancelled")


def _approval_steps(run: dict[str, Any]) -> set[str]:
    status = run.get("status") or {}
    spec = status.get("workflowSpec") or (run.get("spec") or {}).get("workflowSpec") or {}
    return {str(s.get("name")) for s in [*(spec.get("steps") or []),
                                         *(spec.get("finally") or [])]
            if isinstance(s, dict) and s.get("approval") is not None}


def _whoami(cluster: Cluster) -> str | None:
    """The user the API server authenticates us as; None if it will not say."""
    try:
        from lightkube.resources.authentication_v1 import (  # noqa: PLC0415
            SelfSubjectReview,
        )

        review = cluster.client.create(SelfSubjectReview())
        info = review.status.userInfo if review.status else None
        return info.username if info and info.username else None
    except Exception:  # an old server or no right to ask: the webhook still knows
        return None


def decide(cluster: Cluster, run_name: str, step: str, decision: str,
           reason: str | None) -> str:
    """Add the decision to spec.approvals (guarded by resourceVersion); what to print."""
    from lightkube import ApiError  # noqa: PLC0415

    from taskforge.cli.errors import CliError  # noqa: PLC0415

    approver = _whoami(cluster)
    for _ in range(5):
        run = cluster.get(RUNS, run_name)
        status = run.get("status") or {}
        if status.get("phase") in _TERMINAL:
            raise CliError(f"workflowrun.taskforge.io/{run_name} already {status['phase']}")
        steps = _approval_steps(run)
        # Before it starts, a run that names a Workflow has no pinned steps to check yet.
        if (steps and step not in steps) or (not steps and status.get("workflowSpec")):
            known = ", ".join(sorted(steps)) or "none"
            raise CliError(f"run {run_name!r} has no approval step {step!r} (approval steps:"
                           f" {known})")
        approvals = list((run.get("spec") or {}).get("approvals") or [])
        done = next((a for a in approvals if a.get("step") == step), None)
        if done is not None:
            who = done.get("user") or done.get("approver") or "someone"
            raise CliError(f"step {step!r} of run {run_name!r} was already decided:"
                           f" {done.get('decision')} by {who}")
        phase = ((status.get("steps") or {}).get(step) or {}).get("phase")
        if phase in _TERMINAL:
            raise CliError(f"step {step!r} of run {run_name!r} is already {phase}")
        entry: dict[str, Any] = {"step": step, "decision": decision}
        if reason:
            entry["reason"] = reason
        if approver:
            entry["approver"] = approver
        rv = (run.get("metadata") or {}).get("resourceVersion")
        try:
            cluster.patch(RUNS, run_name, {"metadata": {"resourceVersion": rv},
                                           "spec": {"approvals": [*approvals, entry]}})
        except ApiError as exc:
            if exc.status.code == 409:
                continue  # the run changed meanwhile: read it again
            raise
        when = "" if phase == "Waiting" else f" (the step is {phase or 'not started'}: it" \
            " takes the decision when it is reached)"
        verb = "approved" if decision == "approve" else "rejected"
        return f"workflowrun.taskforge.io/{run_name} step {step} {verb}{when}"
    raise CliError(f"run {run_name!r} kept changing; try again")


def approve(
    ctx: typer.Context,
    *,
    run_name: RunArg,
    step: StepArg,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in status).",
                                               show_default=False)] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Approve a run's approval step (adds it to spec.approvals; RBAC: patch workflowruns)."""
    from taskforge.cli.client import connect  # noqa: PLC0415

    cluster = connect(ctx, namespace, context, kubeconfig)
    print(decide(cluster, run_name, step, "approve", reason))


def reject(
    ctx: typer.Context,
    *,
    run_name: RunArg,
    step: StepArg,
    reason: Annotated[str, typer.Option("--reason", help="Why (required; kept in status).",
                                        show_default=False)],
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Reject a run's approval step: it fails, and with it the run (unless continueOnFailure)."""
    from taskforge.cli.client import connect  # noqa: PLC0415

    cluster = connect(ctx, namespace, context, kubeconfig)
    print(decide(cluster, run_name, step, "reject", reason))
