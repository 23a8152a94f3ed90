"""The data templates and `when` conditions see: params, steps, run and trigger.

Both languages read the same shape (`steps.NAME.outputs`, `.phase`, `.exitCode`,
`.attempts`), built from the run's status during the plan, so a step launched later in the
same reconcile already sees the outputs a job reported earlier in it.

Step names may contain `-`, which both languages read as minus: write `steps['my-step']`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from taskforge.api.resultlog import truncated_keys
from taskforge.api.run import StepStatus, WorkflowRunSpec
from taskforge.engine.outputs import UNAVAILABLE_KEY, StepOutputs

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_PENDING = StepStatus()


def step_entry(
    status: StepStatus, name: str = "", whole: Mapping[str, Any] | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """One step as templates see it; outputs default to {} so `.outputs` always exists.

    `whole` is the step's whole result when status holds only a summary of it (see
    engine/stored.py); `note` says why it could not be loaded, for the error a template
    gets when it reads a key the summary left out.
    """
    if status.items is not None:  # a forEach step: its items' outputs, in order
        return {
            "phase": status.phase,
            "outputs": list(status.items.outputs or ()),
            "exitCode": status.exit_code,
            "attempts": status.attempts,
        }
    if whole is not None:
        outputs: Mapping[str, Any] = whole
    else:
        outputs = status.outputs or {}
        if status.result is not None:
            outputs = {**outputs, UNAVAILABLE_KEY: note or "it was not loaded for this plan"}
    return {
        "phase": status.phase,
        "outputs": StepOutputs(name, outputs, status.phase),
        "exitCode": status.exit_code,
        "attempts": status.attempts,
    }


class StepsView(Mapping[str, dict[str, Any]]):
    """`steps` for templates, built entry by entry on access.

    A run has up to 2,000 steps and a plan may render hundreds of configs: building the full
    map for each would make a reconcile O(n^2). Reading the live working dict also means a
    result recorded earlier in the same plan is visible.
    """

    def __init__(
        self, statuses: Mapping[str, StepStatus], names: tuple[str, ...],
        results: Mapping[str, Mapping[str, Any]] | None = None,
        notes: Mapping[str, str] | None = None,
    ) -> None:
        self._statuses = statuses
        self._names = names
        self._known = frozenset(names)
        self._results = results if results is not None else {}
        self._notes = notes if notes is not None else {}

    def __getitem__(self, name: str) -> dict[str, Any]:
        if name not in self._known:
            raise KeyError(name)
        return step_entry(self._statuses.get(name, _PENDING), name, self._results.get(name),
                          self._notes.get(name))

    def __contains__(self, name: object) -> bool:
        return name in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


@dataclass(frozen=True)
class EvalContext:
    """Everything but `steps` is fixed for the whole plan; `steps` reads the working status."""

    params: Mapping[str, Any]
    run: Mapping[str, Any]
    trigger: Mapping[str, Any]
    steps: StepsView

    def for_templates(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "steps": self.steps,
            "run": self.run,
            "trigger": self.trigger,
        }

    def outputs_hint(self, expression: str) -> str:
        """For a `when` that failed: the truncated keys of the steps it names, and why, since
        CEL itself can only say "no such key"."""
        notes: list[str] = []
        for name in sorted(set(_TOKEN.findall(expression)) & self.steps._known):
            outputs = self.steps[name]["outputs"]
            if not isinstance(outputs, StepOutputs):
                continue
            for key in truncated_keys(outputs):
                if key in expression:
                    notes.append(outputs.explain(key))
        return f" ({'; '.join(notes)})" if notes else ""

    def for_cel(self, expression: str) -> dict[str, Any]:
        """A plain dict with only the top-level names and steps the expression mentions.

        The CEL binding converts its whole context on every evaluation (about 10 ms for
        1,000 steps with outputs), so `steps` holds only the steps named literally in the
        expression; `steps.all(...)` over every step is therefore not supported.
        """
        tokens = set(_TOKEN.findall(expression))
        out: dict[str, Any] = {}
        if "params" in tokens:
            out["params"] = dict(self.params)
        if "run" in tokens:
            out["run"] = dict(self.run)
        if "trigger" in tokens:
            out["trigger"] = dict(self.trigger)
        if "steps" in tokens:
            out["steps"] = {n: self.steps[n] for n in tokens if n in self.steps}
        return out


def build_context(
    *,
    run_name: str,
    namespace: str,
    uid: str,
    workflow: str | None,
    spec: WorkflowRunSpec,
    params: Mapping[str, Any],
    statuses: Mapping[str, StepStatus],
    names: tuple[str, ...],
    results: Mapping[str, Mapping[str, Any]] | None = None,
    notes: Mapping[str, str] | None = None,
) -> EvalContext:
    trigger = spec.trigger
    scheduled = trigger.scheduled_time if trigger else None
    return EvalContext(
        params=params,
        run={"name": run_name, "namespace": namespace, "uid": uid, "workflow": workflow},
        trigger={
            "type": trigger.type if trigger else "manual",
            "body": trigger.body if trigger else None,
            "scheduledTime": scheduled.isoformat() if scheduled else None,
            "deliveryId": trigger.delivery_id if trigger else None,
        },
        steps=StepsView(statuses, names, results, notes),
    )
