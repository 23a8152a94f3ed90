"""Prometheus metrics of the operator, served on /metrics by the one HTTP server.

Labels are bounded on purpose: namespace, workflow, step type, phase, outcome, trigger,
answer code, Redis operation. A run's, step's or Job's name never becomes a label (each run
would add series forever, the cardinality trouble Argo users fight). For installations with
very many Workflows, `TASKFORGE_METRICS_WORKFLOW_LABEL=false` (`configure(workflow_label=
False)`) sets the workflow label to "", which Prometheus treats as no label at all.

`_created` series are turned off: they double the series of every counter and histogram and
nothing here reads them. The engine never imports this module: it reports what happened
(`engine.telemetry.RunChanges`) and the handlers record it with `record_run_changes`.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from taskforge.engine.telemetry import RunChanges

disable_created_metrics()  # type: ignore[no-untyped-call]

_WORKFLOW_LABEL = [True]

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

RECONCILES = Counter(
    "taskforge_reconciles_total", "Run reconciles, by outcome (ok, error).", ["outcome"]
)
RECONCILE_ERRORS = Counter(
    "taskforge_reconcile_errors_total",
    "Run reconciles that raised, by reason: the error's class, with the API status if any"
    " (ApiException500).",
    ["reason"],
)
RECONCILE_SECONDS = Histogram(
    "taskforge_reconcile_duration_seconds",
    "Wall time of one run reconcile (plan, actions, status write).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
JOBS_CREATED = Counter("taskforge_jobs_created_total", "Jobs created for step attempts.")
JOBS_DELETED = Counter("taskforge_jobs_deleted_total", "Jobs deleted (cancel, timeout).")
RUNS_STARTED = Counter(
    "taskforge_runs_started_total", "Runs started (pinned to their workflow).",
    ["namespace", "workflow", "trigger"],
)
RUNS_FINISHED = Counter(
    "taskforge_runs_finished_total", "Runs that reached a terminal phase.",
    ["namespace", "workflow", "trigger", "phase"],
)
RUN_SECONDS = Histogram(
    "taskforge_run_duration_seconds", "From a run's start to its terminal phase.",
    ["namespace", "workflow", "phase"], buckets=DURATION_BUCKETS,
)
STEPS_FINISHED = Counter(
    "taskforge_steps_finished_total",
    "Steps that reached a terminal phase (Succeeded, Failed, Skipped, Cancelled).",
    ["namespace", "workflow", "type", "phase"],
)
ATTEMPTS = Counter(
    "taskforge_step_attempts_total",
    "Step attempts that ended, by outcome: succeeded, retryable, permanent, timeout,"
    " cancelled.",
    ["namespace", "workflow", "type", "outcome"],
)
ATTEMPT_SECONDS = Histogram(
    "taskforge_step_attempt_duration_seconds",
    "From an attempt's Job creation to its end.",
    ["namespace", "workflow", "type"], buckets=DURATION_BUCKETS,
)
FIRST_JOB_SECONDS = Histogram(
    "taskforge_run_first_job_seconds",
    "From a run's creation to its first Job (admission, limits, planning).",
    ["namespace"], buckets=LATENCY_BUCKETS,
)
HANDOFF_SECONDS = Histogram(
    "taskforge_step_handoff_seconds",
    "From the end of a step's last dependency to the step's Job.",
    ["namespace"], buckets=LATENCY_BUCKETS,
)
LIMIT_WAITS = Counter(
    "taskforge_limit_waits_total",
    "Times a run or a step began to wait for a limit, by kind: run_rate, run_concurrency,"
    " step_rate, step_concurrency.",
    ["namespace", "kind"],
)
DEAD_LETTERS = Counter(
    "taskforge_dead_letters_recorded_total", "Dead-letter records written to run status.",
    ["namespace", "workflow"],
)
DEAD_LETTERS_SHIPPED = Counter(
    "taskforge_dead_letters_shipped_total",
    "Dead-letter records Redis acknowledged (the outbox drained).", ["namespace", "workflow"],
)
DEAD_LETTERS_UNSHIPPED = Gauge(
    "taskforge_dead_letters_unshipped", "Dead-letter records in run status not yet in Redis."
)
CRON_LATENESS = Histogram(
    "taskforge_cron_lateness_seconds",
    "From a schedule's time to the creation of its run.",
    ["namespace", "workflow"], buckets=(*LATENCY_BUCKETS, 30, 60, 300),
)
CRON_MISSED = Counter(
    "taskforge_cron_missed_schedules_total",
    "Schedule times reported not started, by reason: MissSchedule (past"
    " startingDeadlineSeconds), TooManyMissedTimes, RunAlreadyActive (concurrencyPolicy"
    " Forbid).",
    ["namespace", "workflow", "reason"],
)
WEBHOOK_REQUESTS = Counter(
    "taskforge_webhook_requests_total", "Webhook deliveries, by the answer's status code.",
    ["code"],
)
WEBHOOK_SECONDS = Histogram(
    "taskforge_webhook_request_duration_seconds", "Time to answer a webhook delivery.",
    buckets=LATENCY_BUCKETS,
)
REDIS_ERRORS = Counter(
    "taskforge_redis_errors_total", "Redis commands that failed, by operation.", ["operation"]
)
REDIS_SECONDS = Histogram(
    "taskforge_redis_command_duration_seconds", "Redis command latency, by operation.",
    ["operation"], buckets=LATENCY_BUCKETS,
)
RUNS_TOO_LARGE = Counter(
    "taskforge_runs_too_large_total",
    "Runs failed because the API server could not store their status or a Job, by reason"
    " (StatusTooLarge, JobTooLarge).",
    ["reason"],
)
STATUS_CONFLICTS = Counter(
    "taskforge_status_conflicts_total", "Status writes refused for a stale resourceVersion."
)
STATUS_WRITES_HELD = Counter(
    "taskforge_status_writes_held_total",
    "Run statuses that only launched steps, held back to be written with the next change"
    " (TASKFORGE_STATUS_COALESCE_SECONDS).",
)
QUEUE_DEPTH = Gauge("taskforge_workqueue_depth", "Keys waiting for a worker.", ["queue"])
QUEUE_OLDEST = Gauge(
    "taskforge_workqueue_oldest_item_seconds",
    "How long the key waiting longest has waited (0 when the queue is empty).", ["queue"],
)
QUEUE_RETRIES = Counter(
    "taskforge_workqueue_retries_total", "Keys requeued after a failure (with backoff).",
    ["queue"],
)
ACTIVE_RUNS = Gauge("taskforge_active_runs", "Runs in the cache that are not terminal.")
TEMPLATE_RENDERS = Counter(
    "taskforge_template_renders_total",
    "Step configs rendered in a template worker (real Jinja), by outcome: ok, limit (over a"
    " cap, out of time or memory), template_error, error (no worker).",
    ["outcome"],
)
TEMPLATE_WORKER_RESTARTS = Counter(
    "taskforge_template_worker_restarts_total",
    "Template workers killed and replaced, by why: timeout, died, oversized.",
    ["why"],
)
LIMITS_SKIPPED = Counter(
    "taskforge_limits_skipped_total",
    "Limit checks not applied because Redis was unreachable (policy open), by kind: run_rate,"
    " run_concurrency, step_rate, step_concurrency, webhook_rate.",
    ["kind"],
)
WATCH_EVENTS = Counter(
    "taskforge_watch_events_total",
    "Watch events received, by resource (workflowruns, workflows, jobs, pods). Jobs and pods"
    " are selected server-side by the run label: other pods of the cluster are never sent.",
    ["resource"],
)
LEADER = Gauge(
    "taskforge_leader",
    "1 while this replica holds the leader Lease (or runs without leader election), else 0.",
)


def configure(*, workflow_label: bool) -> None:
    _WORKFLOW_LABEL[0] = workflow_label


def workflow_label(name: str | None) -> str:
    """The workflow label's value: "" for inline specs, or when the setting drops it."""
    return (name or "") if _WORKFLOW_LABEL[0] else ""


_CHILDREN: dict[tuple[object, tuple[str, ...]], Any] = {}


def child(metric: Counter | Histogram, *labels: str) -> Any:
    """`metric.labels(*labels)`, cached: labels() validates and locks on every call, a third
    of the bookkeeping's cost per reconcile. The label sets are bounded, and so is this."""
    key = (metric, labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return found


def record_run_changes(namespace: str, workflow: str | None, changes: RunChanges) -> None:
    """Count what one reconcile of a run did (the engine's RunChanges)."""
    if not changes.any:
        return
    wf = workflow_label(workflow)
    if changes.started:
        child(RUNS_STARTED, namespace, wf, changes.trigger).inc()
    if changes.first_job_seconds is not None:
        child(FIRST_JOB_SECONDS, namespace).observe(changes.first_job_seconds)
    for seconds in changes.handoffs:
        child(HANDOFF_SECONDS, namespace).observe(seconds)
    for attempt in changes.attempts:
        child(ATTEMPTS, namespace, wf, attempt.type, attempt.outcome).inc()
        if attempt.seconds is not None:
            child(ATTEMPT_SECONDS, namespace, wf, attempt.type).observe(attempt.seconds)
    for step_type, phase in changes.steps_finished:
        child(STEPS_FINISHED, namespace, wf, step_type, phase).inc()
    for kind in changes.waits:
        child(LIMIT_WAITS, namespace, kind).inc()
    if changes.dead_letter_recorded:
        child(DEAD_LETTERS, namespace, wf).inc()
    if changes.dead_letter_shipped:
        child(DEAD_LETTERS_SHIPPED, namespace, wf).inc()
    if changes.finished is not None:
        child(RUNS_FINISHED, namespace, wf, changes.trigger, changes.finished).inc()
        if changes.run_seconds is not None:
            child(RUN_SECONDS, namespace, wf, changes.finished).observe(changes.run_seconds)


def observe_redis(operation: str, seconds: float, ok: bool) -> None:
    """redis_client's call observer (see redis_client.OBSERVERS)."""
    REDIS_SECONDS.labels(operation).observe(seconds)
    if not ok:
        REDIS_ERRORS.labels(operation).inc()


def record_queue(name: str, depth: int, oldest_seconds: float) -> None:
    QUEUE_DEPTH.labels(name).set(depth)
    QUEUE_OLDEST.labels(name).set(oldest_seconds)


def metrics_table() -> str:
    """The README's table of the metrics (a test fails when it drifts from this module)."""
    rows = ["| metric | type | labels | what |", "|---|---|---|---|"]
    for collector in (c for c in list(globals().values())
                      if isinstance(c, Counter | Gauge | Histogram)):
        family = next(iter(collector.describe()))
        suffix = "_total" if family.type == "counter" else ""
        labels = ", ".join(getattr(collector, "_labelnames", ()))
        rows.append(f"| `{family.name}{suffix}` | {family.type} | {labels} |"
                    f" {family.documentation} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(metrics_table())
