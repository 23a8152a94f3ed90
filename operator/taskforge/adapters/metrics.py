"""Prometheus metrics of the operator, served on /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter(
    "taskforge_reconciles_total", "Run reconciles, by outcome.", ["outcome"]
)
RECONCILE_SECONDS = Histogram(
    "taskforge_reconcile_duration_seconds",
    "Wall time of one run reconcile (plan, actions, status write).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
JOBS_CREATED = Counter("taskforge_jobs_created_total", "Jobs created for step attempts.")
JOBS_DELETED = Counter("taskforge_jobs_deleted_total", "Jobs deleted (cancel, timeout).")
RUNS_FINISHED = Counter(
    "taskforge_runs_finished_total", "Runs that reached a terminal phase.", ["phase"]
)
STEPS_FINISHED = Counter(
    "taskforge_steps_finished_total", "Steps that reached a terminal phase.", ["phase"]
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
QUEUE_DEPTH = Gauge("taskforge_workqueue_depth", "Runs waiting for a reconcile.")
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


LEADER = Gauge(
    "taskforge_leader",
    "1 while this replica holds the leader Lease (or runs without leader election), else 0.",
)


def serve(port: int) -> None:
    start_http_server(port, addr="0.0.0.0")
