"""Scenarios writes and size: what the operator costs the API server (and etcd)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .apiserver_metrics import WriteKey, apiserver_writes
from .cluster import Bench, Operator, Reconciles
from .common import (
    HISTORY,
    JSON,
    OPERATOR_COMPONENT,
    chain_spec,
    compact,
    fan_out_spec,
    log_step,
    ms,
    size,
    verdict,
)
from .kube import RunTracker, Watch
from .report import Outcome, Section, Summary

# --- scenario: writes per step --------------------------------------------------------------------


OPERATOR_WRITES = {
    ("POST", "jobs"), ("DELETE", "jobs"),
    ("PATCH", "workflowruns/status"), ("PUT", "workflowruns/status"),
    ("PATCH", "workflowruns"), ("PUT", "workflowruns"), ("DELETE", "workflowruns"),
    ("PATCH", "workflows/status"), ("PUT", "workflows/status"), ("PATCH", "workflows"),
}


@dataclass
class WriteBatch:
    label: str
    steps: int
    runs: int
    operator: Counter[str]
    cluster: Counter[str]
    bench: Counter[str]
    seconds: float
    event_reasons: Counter[str]

    @property
    def operator_per_step(self) -> float:
        return sum(self.operator.values()) / self.steps

    @property
    def own_per_step(self) -> float:
        """The operator's writes without its Events: Job creates and status patches."""
        return sum(v for k, v in self.operator.items() if "events" not in k) / self.steps

    @property
    def events_per_step(self) -> float:
        return sum(v for k, v in self.operator.items() if "events" in k) / self.steps


def settle_apiserver(b: Bench, quiet: float = 1.5, timeout: float = 20.0) -> Counter[WriteKey]:
    """Scrape until the write counters (leases and nodes aside) stop moving; the last scrape."""
    def relevant(c: Counter[WriteKey]) -> int:
        return sum(v for (verb, res), v in c.items()
                   if not res.startswith(("leases", "nodes")))

    deadline = time.monotonic() + timeout
    last = apiserver_writes(b.k.metrics())
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = apiserver_writes(b.k.metrics())
        if relevant(now) != relevant(last):
            since = time.monotonic()
        last = now
        if time.monotonic() - since >= quiet:
            break
    return last


def events_by_name(b: Bench, ns: str) -> dict[str, tuple[str, str]]:
    """name -> (reporting component, reason) of every Event in the namespace."""
    out: dict[str, tuple[str, str]] = {}
    for item in b.k.get(f"/api/v1/namespaces/{ns}/events").get("items") or []:
        component = (item.get("reportingComponent")
                     or (item.get("source") or {}).get("component") or "?")
        out[item["metadata"]["name"]] = (component, str(item.get("reason")))
    return out


def write_batch(b: Bench, op: Operator, ns: str, workflow: str, *, steps_per_run: int,
                runs: int, label_: str) -> WriteBatch:
    tracker = RunTracker()
    names = [f"{workflow}-{i:03d}" for i in range(runs)]
    with Watch(b.k, b.runs_path(ns), tracker.handle):
        op.wait_quiet(quiet=0.5, timeout=20)
        before = settle_apiserver(b)
        events_before = events_by_name(b, ns)
        t0 = time.monotonic()
        b.k.create_runs(ns, workflow, names, threads=4)
        if not tracker.wait_finished(names, timeout=120):
            raise RuntimeError(f"{label_}: runs did not finish")
        seconds = time.monotonic() - t0
        bad = [n for n in names if tracker.phase.get(n) != "Succeeded"]
        if bad:
            raise RuntimeError(f"{label_}: runs not Succeeded: {bad[:5]}")
        op.wait_quiet(quiet=1.0, timeout=30)
        after = settle_apiserver(b)
    new_events = [ev for name, ev in events_by_name(b, ns).items() if name not in events_before]
    operator_events = sum(1 for component, _ in new_events if component == OPERATOR_COMPONENT)
    reasons = Counter(f"{component}/{reason}" for component, reason in new_events)
    delta = after - before
    operator: Counter[str] = Counter()
    cluster: Counter[str] = Counter()
    bench: Counter[str] = Counter()
    for (verb, res), count in delta.items():
        key = f"{verb} {res}"
        if (verb, res) == ("POST", "workflowruns"):
            mine = min(count, runs)
            bench[key] += mine
            if count > mine:
                operator[key] += count - mine
        elif (verb, res) == ("POST", "events"):
            ours = min(count, operator_events)
            if ours:
                operator[key] += ours
            if count > ours:
                cluster[key] += count - ours
        elif (verb, res.split(" [")[0]) in OPERATOR_WRITES:
            operator[key] += count
        else:
            cluster[key] += count
    return WriteBatch(label_, steps_per_run * runs, runs, operator, cluster, bench, seconds,
                      reasons)


def scenario_writes(b: Bench) -> Outcome:
    batches: list[WriteBatch] = []
    chain_runs, single_runs = b.args.writes_chain_runs, b.args.writes_single_runs
    with b.operator("writes") as op:
        for tag in ("default", "all"):  # the Workflow's spec.stepEvents
            ns = f"bench-writes-{tag}"
            b.k.namespace(ns)
            b.k.workflow(ns, "chain", {**chain_spec(10), "stepEvents": tag})
            b.k.workflow(ns, "one", {"steps": [log_step("only")], "history": HISTORY,
                                     "stepEvents": tag})
            batches.append(write_batch(b, op, ns, "chain", steps_per_run=10, runs=chain_runs,
                                       label_=f"10-step chain, stepEvents {tag}"))
            batches.append(write_batch(b, op, ns, "one", steps_per_run=1, runs=single_runs,
                                       label_=f"1-step runs, stepEvents {tag}"))
    keys_op = sorted({k for wb in batches for k in wb.operator})
    keys_cl = sorted({k for wb in batches for k in wb.cluster})
    keys_b = sorted({k for wb in batches for k in wb.bench})
    headers = ["writes per step", *[f"{wb.label} ({wb.runs} runs, {wb.steps} steps)"
                                   for wb in batches]]
    rows: list[list[str]] = []

    def add(prefix: str, keys: list[str], pick: Callable[[WriteBatch], Counter[str]]) -> None:
        for key in keys:
            rows.append([f"{prefix}: {key}", *[f"{pick(wb)[key] / wb.steps:.2f}"
                                               for wb in batches]])
        rows.append([f"**{prefix} total**",
                     *[f"**{sum(pick(wb).values()) / wb.steps:.2f}**" for wb in batches]])

    add("operator", keys_op, lambda wb: wb.operator)
    rows.append(["**operator without Events (Job creates, status)**",
                 *[f"**{wb.own_per_step:.2f}**" for wb in batches]])
    reasons = sorted({r for wb in batches for r in wb.event_reasons})
    for reason in reasons:
        component, _, why = reason.partition("/")
        who = "operator" if component == OPERATOR_COMPONENT else "cluster"
        rows.append([f"  ({who} Events: {why})",
                     *[f"{wb.event_reasons[reason] / wb.steps:.2f}" for wb in batches]])
    add("benchmark", keys_b, lambda wb: wb.bench)
    add("cluster", keys_cl, lambda wb: wb.cluster)
    rows.append(["batch wall time", *[f"{wb.seconds:.1f} s" for wb in batches]])

    def pick(steps: int, events: str) -> WriteBatch:
        return next(wb for wb in batches if wb.steps == steps * (
            chain_runs if steps == 10 else single_runs) and wb.label.endswith(f" {events}"))

    sec = Section(
        "API writes per step (kube-apiserver apiserver_request_total; targets: the operator's "
        "own <= 2.2 on a chain, <= 3 for 1-step runs; Events apart, <= 1 per step by default)",
        headers, rows,
        [
            "operator: POST/DELETE jobs, workflowruns and workflows (status) writes, and the "
            "Events whose reportingComponent is taskforge-operator; benchmark: the runs it "
            "created; cluster: everything else (job controller, node agent, leases)",
            "counters scraped once the API server had been quiet for 1.5 s before and after "
            "each batch; [code] marks requests that failed",
            "stepEvents (Workflow spec): default posts Events for retries, failures and the "
            "run's end; all adds StepStarted and StepSucceeded (today's behaviour before "
            "issue 14). PATCH workflows/status is the workflow's run summary, one per 1 s "
            "batch window whatever the number of runs finishing in it",
        ],
    )
    summary = []
    for steps, what, limit in ((10, "10-step chain", 2.2), (1, "1-step runs", 3.0)):
        default, every = pick(steps, "default"), pick(steps, "all")
        summary.append(Summary(
            f"operator's own API writes per step (Job + status), {what}", f"<= {limit:g}",
            f"{default.own_per_step:.2f} (stepEvents all: {every.own_per_step:.2f})",
            default.own_per_step <= limit + 1e-9))
        summary.append(Summary(
            f"operator Events per step, {what}", "<= 1 (default)",
            f"{default.events_per_step:.2f} default, {every.events_per_step:.2f} all",
            default.events_per_step <= 1 + 1e-9))
    return Outcome([sec], summary)


# --- scenario: 1,000-step run size ----------------------------------------------------------------


def managed_fields_rows(meta: JSON) -> list[list[str]]:
    """Size of each managedFields entry, and of the status.steps and workflowSpec it tracks."""
    rows = []
    for entry in meta.get("managedFields") or []:
        who = f"{entry.get('manager')} {entry.get('operation')}"
        if entry.get("subresource"):
            who += f" /{entry['subresource']}"
        rows.append([f"    entry: {who}", size(compact(entry))])
        status = (entry.get("fieldsV1") or {}).get("f:status") or {}
        for key in ("f:steps", "f:workflowSpec"):
            if key in status:
                rows.append([f"      of which {key[2:]}", size(compact(status[key]))])
    return rows


def scenario_size(b: Bench) -> Outcome:
    ns = "bench-size"
    n = 1000
    b.k.namespace(ns)
    b.k.workflow(ns, "wide", fan_out_spec(n))
    tracker = RunTracker()
    name = "wide-1"
    with b.operator("size") as op, Watch(b.k, b.runs_path(ns), tracker.handle):
        op.wait_quiet(quiet=0.5, timeout=10)
        writes0 = apiserver_writes(b.k.metrics())
        cpu0, cluster0 = op.cpu_seconds(), b.cluster_cpu()
        rec0 = Reconciles.scrape(op)
        t0 = time.monotonic()
        b.k.create_run(ns, name, "wide")
        if not tracker.wait_finished([name], timeout=b.args.size_timeout):
            raise RuntimeError(f"the {n}-step run did not finish in {b.args.size_timeout}s")
        wall = tracker.finished_at[name] - t0
        cpu, cluster1 = op.cpu_seconds() - cpu0, b.cluster_cpu()
        rec = Reconciles.scrape(op).minus(rec0)
        time.sleep(1.0)
        writes = apiserver_writes(b.k.metrics()) - writes0
        raw = b.k.get_raw(f"{b.runs_path(ns)}/{name}")
    run = json.loads(raw)
    status = run.get("status") or {}
    meta = run.get("metadata") or {}
    steps = status.get("steps") or {}
    phases = Counter(s.get("phase") for s in steps.values())
    size_kib = len(raw) / 1024
    ok = size_kib < 512 and status.get("phase") == "Succeeded"
    rest = {k: v for k, v in status.items() if k not in ("steps", "workflowSpec")}
    parts = [
        ["whole object (GET, JSON)", size(len(raw))],
        ["  metadata.managedFields", size(compact(meta.get("managedFields")))],
        *managed_fields_rows(meta),
        ["  spec", size(compact(run.get("spec")))],
        ["  status.workflowSpec (pinned copy)", size(compact(status.get("workflowSpec")))],
        ["  status.steps", f"{size(compact(steps))} "
                           f"({compact(steps) / max(1, len(steps)):.0f} B per step)"],
        ["  rest of status", size(compact(rest))],
        ["whole object without managedFields",
         size(len(raw) - compact(meta.get("managedFields")))],
        ["run phase / step phases", f"{status.get('phase')} / "
                                    + ", ".join(f"{k} {v}" for k, v in sorted(phases.items()))],
        ["run wall time (create -> Succeeded seen)", f"{wall:.1f} s ({n / wall:.0f} steps/s)"],
        ["status writes (PATCH workflowruns/status)",
         f"{writes.get(('PATCH', 'workflowruns/status'), 0)}"],
        ["Jobs created (POST jobs)", f"{writes.get(('POST', 'jobs'), 0)}"],
        ["operator reconciles, mean wall time",
         f"{rec.count:.0f}, {ms(rec.seconds / max(1, rec.count))}"],
        ["CPU: operator", f"{cpu:.1f} s"],
        *[[f"CPU: {proc}", f"{cluster1.get(proc, 0) - start:.1f} s"]
          for proc, start in sorted(cluster0.items())],
        ["target (< 512 KiB)", verdict(ok)],
    ]
    sec = Section(
        f"Size of a finished {n:,}-step run (1 root, {n - 11} parallel workers, 10 collectors; "
        "log steps, instant pods)", ["measure", "value"], parts,
        ["size is the JSON the API server returns for a GET, which is what it stores for a "
         "custom resource (etcd limit 1.5 MiB)"],
    )
    return Outcome([sec], [Summary(f"{n:,}-step run object size", "< 512 KiB",
                                   f"{size_kib:.0f} KiB (run took {wall:.0f} s)", ok)])
