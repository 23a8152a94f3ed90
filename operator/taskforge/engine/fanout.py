"""forEach: one step run once per item, each item its own series of attempts.

The step itself has the phases every step has (its dependents wait for the whole step);
inside it, each item is Pending, Running, waiting to retry, or ended. An item's attempt is a
Job named from the run, the step, the item and the attempt (`naming.item_job_name`) and
labelled `taskforge.io/item`, so, exactly like a plain step, a replan from the same facts asks
for the same Jobs, and a Job whose launch the status lost is adopted, never launched again.

Bounded status, whatever the number of items (ItemsStatus in api/step_status.py):

* `phases`: one letter per item (1,000 items: 1,000 bytes) and the counts;
* `active`: a small record per item that runs or waits for a retry (at most maxParallel);
* `failures`: a record for the first MAX_ITEM_FAILURES_KEPT failed items, the rest counted;
* `outputs`: each item's outputs in order, an item over its share of ITEM_OUTPUTS_BYTES
  (shared out by the item count, never under MIN_ITEM_OUTPUT_BYTES) kept as a per-key
  summary (`_truncated`), like a step over its share (engine/results.py);
* `values`: the rendered items, when `items` is a template (at most MAX_VALUES_BYTES).

Failure: without `continueOnFailure` the first item that fails for good stops the step from
starting items (Tekton's rule for a run, here inside the step): running items finish, their
failures are no longer retried, waiting retries and unstarted items are Cancelled, and the
step ends Failed. With `continueOnFailure` every item runs and the step ends Succeeded once
all have ended, its failed items counted and listed. A run that is failing elsewhere starts
no new item either.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

from taskforge.api.durations import ceil_millis, parse_duration
from taskforge.api.run import (
    MAX_ITEM_FAILURES_KEPT,
    ItemRecord,
    ItemsStatus,
    StepFailure,
    StepStatus,
)
from taskforge.api.steps import MAX_FOREACH_ITEMS, FailureKind
from taskforge.engine.actions import CreateJob, DeleteJob
from taskforge.engine.facts import ObservedJob
from taskforge.engine.naming import LABEL_ITEM, item_job_name, job_labels
from taskforge.engine.observe import failed, failure_text, timeout_text
from taskforge.engine.podsettings import merge_pod_settings
from taskforge.engine.results import bound_message, bound_outputs, parse_result
from taskforge.engine.retry import decide
from taskforge.engine.sandbox import utf8_size
from taskforge.engine.stored import whole_outputs
from taskforge.engine.templating import (
    TemplateError,
    TemplateLimitError,
    render_config,
    render_step_config,
)
from taskforge.engine.work import Work

ITEM_OUTPUTS_BYTES = 64 * 1024
"""The outputs of one forEach step's items together, shared out by the item count."""
MIN_ITEM_OUTPUT_BYTES = 64
MAX_VALUES_BYTES = 64 * 1024
"""The rendered items of a templated `items`, as compact JSON."""
MAX_ITEM_EVENTS = 10
"""Warning Events for the first failed items of a step; later ones are only counted."""
REPEAT_RENDER_SECONDS = 5.0

PENDING, RUNNING, RETRYING, SUCCEEDED, FAILED, CANCELLED = "P", "R", "T", "S", "F", "C"
_ENDED = frozenset({SUCCEEDED, FAILED, CANCELLED})


class ItemsError(Exception):
    """`forEach.items` did not give a usable list; the message names the field."""


def is_fanout(work: Work, name: str) -> bool:
    return work.dag.steps[name].for_each is not None


def resolve_items(work: Work, name: str) -> tuple[list[Any], bool]:
    """The items, and whether they came from a template (then status keeps them)."""
    for_each = work.dag.steps[name].for_each
    assert for_each is not None
    if isinstance(for_each.items, list):
        return list(for_each.items), False
    try:
        rendered = render_config({"items": for_each.items}, work.ctx.for_templates(),
                                 work.render, "forEach")["items"]
    except TemplateError as exc:
        raise type(exc)(f"step {name!r}: {exc}") from exc
    try:
        value = json.loads(rendered)
    except ValueError as exc:
        raise ItemsError(f"forEach.items must render to a JSON list; got {rendered[:80]!r}"
                         f" ({exc})") from exc
    if not isinstance(value, list):
        raise ItemsError(f"forEach.items must render to a JSON list, not a JSON"
                         f" {type(value).__name__}")
    if len(value) > MAX_FOREACH_ITEMS:
        raise ItemsError(f"forEach.items: {len(value)} items, over the limit of"
                         f" {MAX_FOREACH_ITEMS}")
    size = utf8_size(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    if size > MAX_VALUES_BYTES:
        raise ItemsError(f"forEach.items: {size:,} bytes as JSON, over the limit of"
                         f" {MAX_VALUES_BYTES:,}")
    return value, True


def start(work: Work, name: str, st: StepStatus) -> None:
    """A Pending forEach step whose dependencies are done (and `when` true): its items."""
    try:
        values, templated = resolve_items(work, name)
    except (TemplateError, ItemsError) as exc:
        kind: StepFailure | None = "TemplateLimit" if isinstance(exc, TemplateLimitError) else None
        failed(work, name, st, None, str(exc), failure=kind)
        return
    n = len(values)
    items = ItemsStatus.model_construct(
        total=n, succeeded=0, failed=0, running=0, retrying=0, pending=n, cancelled=0,
        phases=PENDING * n, values=values if templated else None,
    )
    if n == 0:
        work.set(name, st, phase="Succeeded", started_at=work.stamp, finished_at=work.stamp,
                 items=items.model_copy(update={"outputs": []}), message="no items")
        return
    st = work.set(name, st, phase="Running", started_at=work.stamp, items=items,
                  next_attempt_at=None, wait_until=None, message=None)
    work.emit("Normal", "StepStarted", f"step {name!r} started: {n} items", name)
    advance(work, name, st, halt_run=False)


class _Items:
    """One step's items, decoded from status for this plan and encoded back once."""

    def __init__(self, work: Work, name: str, st: StepStatus) -> None:
        assert st.items is not None
        self.work, self.name, self.st = work, name, st
        step = work.dag.steps[name]
        assert step.for_each is not None
        self.step = step
        self.items: ItemsStatus = st.items
        self.codes = list(st.items.phases)
        self.active = {r.index: r for r in st.items.active or ()}
        self.failures = list(st.items.failures or ())
        total = st.items.total
        self.outputs: list[Any] = list(st.items.outputs or [None] * total)
        values = st.items.values
        self.values: list[Any] = values if values is not None else list(step.for_each.items)
        self.launched = st.attempts
        self.jobs = work.item_jobs.get(name, {})
        self.share = max(MIN_ITEM_OUTPUT_BYTES, ITEM_OUTPUTS_BYTES // max(total, 1))

    def adopt(self) -> None:
        """Jobs the status does not record (a lost status write): continue as them."""
        for (index, attempt), job in sorted(self.jobs.items()):
            if index >= len(self.codes):
                continue
            code, rec = self.codes[index], self.active.get(index)
            if (code == PENDING and attempt == 1) or (
                    code == RETRYING and rec is not None and attempt == rec.attempts + 1):
                self.active[index] = ItemRecord.model_construct(
                    index=index, attempts=attempt, job_name=job.name,
                    started_at=job.started_at or self.work.stamp)
                self.codes[index] = RUNNING
                self.launched += 1

    def fold(self, halt: bool) -> bool:
        """Apply finished Jobs; True when the step halts (an item failed for good)."""
        decisions = []
        for index in sorted(i for i in self.active if self.codes[i] == RUNNING):
            rec = self.active[index]
            job = self.jobs.get((index, rec.attempts))
            if job is None or job.state == "Active":
                continue
            if job.state == "Succeeded":
                self.codes[index] = SUCCEEDED
                self.outputs[index] = self._kept(job)
                del self.active[index]
                continue
            kind: FailureKind = job.failure or "Failed"
            result = parse_result(job.termination_message, job.exit_code)
            error = failure_text(kind, job, result, timeout_text(self.work, self.name))
            decision = decide(self.step.retry or self.work.spec.retry, rec.attempts, kind,
                              result)
            decisions.append((index, rec, job, decision, bound_message(error)))
            if not decision.retry and not self.step.continue_on_failure:
                halt = True
        for index, rec, job, decision, error in decisions:
            if decision.retry and not halt:
                delay = ceil_millis(self.work.now + timedelta(seconds=decision.delay))
                self.active[index] = rec.model_copy(update={
                    "next_attempt_at": delay, "exit_code": job.exit_code,
                    "failure": job.failure or "Failed", "message": error[:128]})
                self.codes[index] = RETRYING
            else:
                why = error if not decision.retry else f"{error}; not retried: the step is failing"
                self._fail(index, rec, job.exit_code, job.failure or "Failed", why,
                           finished=job.finished_at)
        return halt

    def _kept(self, job: ObservedJob) -> dict[str, Any]:
        outputs = whole_outputs(job)
        if outputs is None:
            outputs = parse_result(job.termination_message, job.exit_code).outputs
        return bound_outputs(outputs, self.share)

    def _fail(self, index: int, rec: ItemRecord, exit_code: int | None, failure: Any,
              message: str, *, finished: Any = None) -> None:
        self.codes[index] = FAILED
        self.active.pop(index, None)
        done = rec.model_copy(update={
            "finished_at": finished or self.work.stamp, "next_attempt_at": None,
            "exit_code": exit_code, "failure": failure, "message": message[:128]})
        if len(self.failures) < MAX_ITEM_FAILURES_KEPT:
            self.failures.append(done)
        if self.codes.count(FAILED) <= MAX_ITEM_EVENTS:
            self.work.emit("Warning", "StepItemFailed",
                           f"step {self.name!r} item {index} failed: {message}")

    def launch(self, index: int, attempt: int, *, again: bool = False) -> None:
        work = self.work
        if not again:
            if work.launch_budget <= 0:
                work.more = True
                return
            work.launch_budget -= 1
        context = {**work.ctx.for_templates(), "item": self.values[index], "index": index}
        try:
            config = render_step_config(self.step, context, work.render)
        except TemplateError as exc:
            if again:
                work.wakeups.append(work.now + timedelta(seconds=REPEAT_RENDER_SECONDS))
                return
            kind = "TemplateLimit" if isinstance(exc, TemplateLimitError) else "Failed"
            rec = self.active.get(index) or ItemRecord.model_construct(index=index, attempts=0)
            self._fail(index, rec, None, kind, f"item {index}: {exc}")
            return
        run = work.facts.name
        job_name = item_job_name(run, self.name, index, attempt)
        labels = {**job_labels(work.workflow, run, self.name, attempt), LABEL_ITEM: str(index)}
        work.actions.append(CreateJob(
            step=self.name, attempt=attempt, job_name=job_name,
            step_type=self.step.step_type, config=config,
            timeout_seconds=_timeout_seconds(work, self.name), labels=labels,
            is_new=not again, pod=merge_pod_settings(work.spec.pod, self.step.pod), item=index,
        ))
        if again:
            return
        self.active[index] = ItemRecord.model_construct(
            index=index, attempts=attempt, job_name=job_name, started_at=work.stamp)
        self.codes[index] = RUNNING
        self.launched += 1

    def launch_more(self) -> None:
        work = self.work
        for index in sorted(self.active):
            rec = self.active[index]
            if self.codes[index] == RUNNING and (index, rec.attempts) not in self.jobs:
                self.launch(index, rec.attempts, again=True)  # created, not observed yet
            elif self.codes[index] == RETRYING:
                due = rec.next_attempt_at
                if due is None or due <= work.now:
                    self.launch(index, rec.attempts + 1)
                else:
                    work.wakeups.append(due)
        free = self.step.for_each.max_parallel - len(self.active)  # type: ignore[union-attr]
        index = 0
        while free > 0 and not work.more:
            try:
                index = self.codes.index(PENDING, index)
            except ValueError:
                break
            self.launch(index, 1)
            if self.codes[index] == PENDING:  # out of budget
                break
            free -= self.codes[index] == RUNNING
            index += 1

    def stop(self, code: str = CANCELLED) -> None:
        """No item starts again: waiting retries and unstarted items end as `code`."""
        for index, c in enumerate(self.codes):
            if c == RETRYING:
                self.active.pop(index, None)
                self.codes[index] = code
            elif c == PENDING:
                self.codes[index] = code

    def status(self) -> ItemsStatus:
        counts = {c: 0 for c in (PENDING, RUNNING, RETRYING, SUCCEEDED, FAILED, CANCELLED)}
        for c in self.codes:
            counts[c] += 1
        fields: dict[str, Any] = {
            "total": len(self.codes), "succeeded": counts[SUCCEEDED], "failed": counts[FAILED],
            "running": counts[RUNNING], "retrying": counts[RETRYING],
            "pending": counts[PENDING], "cancelled": counts[CANCELLED],
            "phases": "".join(self.codes), "outputs": self.outputs,
        }
        if self.active:
            fields["active"] = [self.active[i] for i in sorted(self.active)]
        if self.failures:
            fields["failures"] = self.failures
        if self.items.values is not None:
            fields["values"] = self.items.values
        return ItemsStatus.model_construct(**fields)


def advance(work: Work, name: str, st: StepStatus, *, halt_run: bool) -> None:
    """One plan's worth of a Running forEach step: fold, retry, launch, maybe end it."""
    items = _Items(work, name, st)
    items.adopt()
    halt = items.fold(halt=halt_run) or (
        FAILED in items.codes and not items.step.continue_on_failure)
    if halt:
        items.stop()
    else:
        items.launch_more()
    status = items.status()
    changes: dict[str, Any] = {"items": status, "attempts": items.launched}
    if not items.active and all(c in _ENDED for c in items.codes):
        changes |= _ending(work, name, items, status, halt_run)
    work.set(name, st, **changes)


def _ending(work: Work, name: str, items: _Items, status: ItemsStatus,
            halt_run: bool) -> dict[str, Any]:
    total, failed_n = status.total, status.failed
    first = items.failures[0] if items.failures else None
    first_text = f"; item {first.index}: {first.message}" if first is not None else ""
    if failed_n and not items.step.continue_on_failure:
        phase, message = "Failed", f"{failed_n} of {total} items failed{first_text}"
        if status.cancelled:
            message += f"; {status.cancelled} not started"
        work.emit("Warning", "StepFailed", f"step {name!r} failed: {message}", name)
        failure = first.failure if first is not None else "Failed"
        return {"phase": "Failed", "finished_at": work.stamp, "failure": failure,
                "message": bound_message(message)}
    if status.cancelled and halt_run:
        phase = "Cancelled"
        message = (f"{status.cancelled} of {total} items not started: the run is failing"
                   f" (step {work.failing!r} failed)")
        return {"phase": phase, "finished_at": work.stamp, "message": bound_message(message)}
    message = f"{status.succeeded} of {total} items succeeded"
    if failed_n:
        message += f", {failed_n} failed (continueOnFailure){first_text}"
    work.emit("Normal", "StepSucceeded", f"step {name!r} succeeded: {message}", name)
    return {"phase": "Succeeded", "finished_at": work.stamp, "message": bound_message(message)}


def cancel(work: Work, name: str, st: StepStatus, why: str) -> None:
    """The run stops: delete running items' Jobs; every unfinished item is Cancelled."""
    if st.items is None:
        work.set(name, st, phase="Cancelled", finished_at=work.stamp, message=why)
        return
    items = _Items(work, name, st)
    items.adopt()
    for index in sorted(items.active):
        rec = items.active[index]
        if items.codes[index] == RUNNING and rec.job_name and rec.job_name not in work.deleted:
            work.actions.append(DeleteJob(rec.job_name, f"step {name!r} item {index}: {why}"))
            work.deleted.add(rec.job_name)
    items.active.clear()
    items.codes = [c if c in _ENDED else CANCELLED for c in items.codes]
    work.set(name, st, phase="Cancelled", finished_at=work.stamp, message=why,
             items=items.status(), attempts=items.launched)


def orphaned(job: ObservedJob, st: StepStatus | None) -> bool:
    """Whether an active item Job must be deleted: its item was cancelled or, by the status,
    never started. A Job of an item that ran or ended is left alone (an "active" Job there
    means the cache has not caught up, as in planner.delete_active)."""
    if st is None or st.items is None or job.item is None:
        return st is not None and st.phase in ("Cancelled", "Skipped")
    phases = st.items.phases
    if not 0 <= job.item < len(phases):
        return True
    return phases[job.item] == CANCELLED or (
        phases[job.item] == PENDING and st.phase in ("Cancelled", "Skipped", "Failed"))


def item_progress(steps: dict[str, StepStatus]) -> str | None:
    """`ended/total` over every forEach step of the run; None when it has none."""
    done = total = 0
    for st in steps.values():
        if st.items is not None:
            total += st.items.total
            done += st.items.succeeded + st.items.failed + st.items.cancelled
    return f"{done}/{total}" if total else None


def _timeout_seconds(work: Work, name: str) -> int | None:
    text = work.dag.steps[name].timeout or work.spec.step_timeout
    return None if text is None else max(1, math.ceil(parse_duration(text)))
