"""The mutable working state of one `plan()` call, discarded when the call returns.

Kept flat on purpose: a 1,000-step reconcile visits every step a few times, so phases live
in a plain dict and the counts the planner asks for (open main steps, open finally steps)
are kept up to date by the single mutation point, `Work.set`, instead of being recounted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from taskforge.api.durations import to_millis
from taskforge.api.run import TERMINAL_STEP_PHASES, StepStatus, WorkflowRunStatus
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.actions import Action, EmitEvent
from taskforge.engine.context import build_context
from taskforge.engine.dag import Dag
from taskforge.engine.facts import ObservedJob, RunFacts
from taskforge.engine.results import output_budget
from taskforge.engine.status import PENDING
from taskforge.engine.stored import loaded
from taskforge.engine.templating import Renderer, render_in_process

TERMINAL = TERMINAL_STEP_PHASES

MAX_JOBS_PER_PLAN = 100
"""At most this many new launches per plan; the rest follow in an immediate requeue. Like the
Job controller's slow-start batches, it bounds one reconcile's time (rendering a config
costs ~40 us), its burst of API calls and the size of its status patch when a wide
fan-out becomes ready at once."""


class Work:
    def __init__(
        self, facts: RunFacts, status: WorkflowRunStatus, spec: WorkflowSpec, dag: Dag
    ) -> None:
        self.facts = facts
        self.now: datetime = facts.now
        self.stamp: datetime = to_millis(facts.now)
        """Times written to status have milliseconds (api/durations.py); comparisons use the
        exact `now`."""
        self.spec = spec
        self.dag = dag
        self.jobs: dict[tuple[str, int], ObservedJob] = {}
        self.item_jobs: dict[str, dict[tuple[int, int], ObservedJob]] = {}
        """forEach items' Jobs by step, then (item, attempt) (engine/fanout.py)."""
        for j in facts.jobs:
            if j.item is None:
                self.jobs[(j.step, j.attempt)] = j
            else:
                self.item_jobs.setdefault(j.step, {})[(j.item, j.attempt)] = j
        self.actions: list[Action] = []
        self.wakeups: list[datetime] = []
        self.deleted: set[str] = set()
        self.launch_budget = MAX_JOBS_PER_PLAN
        self.render: Renderer = render_in_process
        self.more = False
        """True when the launch budget ran out: requeue at once."""
        self.steps: dict[str, StepStatus] = dict(status.steps or {})
        phase = dict.fromkeys(dag.order, "Pending")
        for name, st in self.steps.items():
            if name in phase:
                phase[name] = st.phase
        self.phase: dict[str, str] = phase
        self._index: dict[str, int] | None = None
        self.open_main = sum(1 for n in dag.main if phase[n] not in TERMINAL)
        self.open_final = sum(1 for n in dag.final if phase[n] not in TERMINAL)
        self.failing: str | None = None
        self._failing_key: tuple[float, int] | None = None
        for name in dag.main:
            if phase[name] == "Failed":
                self.mark_failing(name, self.steps[name].finished_at)
        self.workflow: str | None = status.workflow.name if status.workflow else None
        self.output_limit = output_budget(len(dag.order))
        self.results, notes = loaded(facts, self.steps)
        """Whole outputs of steps whose status holds a summary (engine/stored.py); a result
        recorded in this plan is added, so later steps of the same plan read it whole."""
        self.ctx = build_context(
            run_name=facts.name,
            namespace=facts.namespace,
            uid=facts.uid,
            workflow=self.workflow,
            spec=facts.spec,
            params=status.params or {},
            statuses=self.steps,
            names=dag.order,
            results=self.results,
            notes=notes,
        )

    def get(self, name: str) -> StepStatus:
        return self.steps.get(name, PENDING)

    def set(self, name: str, st: StepStatus, **changes: object) -> StepStatus:
        """Replace a step's status (model_copy: no re-validation in the hot path)."""
        new = st.model_copy(update=changes)
        self.steps[name] = new
        old_phase, new_phase = self.phase[name], new.phase
        if old_phase != new_phase:
            self.phase[name] = new_phase
            closed = (new_phase in TERMINAL) - (old_phase in TERMINAL)
            if name in self.dag.final_set:
                self.open_final -= closed
            else:
                self.open_main -= closed
                if new_phase == "Failed":
                    self.mark_failing(name, new.finished_at)
        return new

    def mark_failing(self, name: str, finished_at: datetime | None) -> None:
        """Remember the main step whose failure dooms the run (Tekton's 'stopping').

        Of several, the earliest failure (then the first in DAG order) is named, the same
        choice a replan of the resulting status makes, so messages naming it are stable.
        """
        if name in self.dag.final_set or name in self.dag.tolerant:
            return
        key = (finished_at.timestamp() if finished_at else float("inf"), self.index(name))
        if self._failing_key is None or key < self._failing_key:
            self.failing, self._failing_key = name, key

    def index(self, name: str) -> int:
        if self._index is None:
            self._index = {n: i for i, n in enumerate(self.dag.order)}
        return self._index[name]

    def emit(
        self,
        kind: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        step: str | None = None,
    ) -> None:
        """Emit an Event, unless it is a step's routine news (Normal: started, succeeded,
        skipped) and the workflow keeps `stepEvents: default`. Each Event is an API write
        (two a step doubled the operator's writes, issue 14); status already shows them."""
        if kind == "Normal" and step is not None and self.spec.step_events != "all":
            return
        self.actions.append(EmitEvent(type=kind, reason=reason, message=message, step=step))

    @property
    def main_done(self) -> bool:
        return self.open_main == 0

    @property
    def all_done(self) -> bool:
        return self.open_main == 0 and self.open_final == 0
