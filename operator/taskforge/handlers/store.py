"""The operator's cache of what the watch streams have shown: runs, workflows, Jobs, pods.

It is a cache, never the truth: every entry comes from the API server and the
operator rebuilds it from the initial listing after a restart. Pods and Jobs
are kept slim (only the fields `observe_job` reads) so 1,000 active runs cost
little memory.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

from taskforge.adapters.jobs import observe_job
from taskforge.api import WorkflowSpec
from taskforge.engine.facts import ObservedJob

Key = tuple[str, str]


def interned(values: dict[str, Any]) -> dict[str, Any]:
    """A copy of a flat dict with its string values interned. Each watch event decodes every
    string afresh: the labels of a step's Job and pod (run, step, attempt, job-name twice,
    controller-uid twice) and the conditions of every run (type, status, reason, the same
    few values) were a few thousand equal copies per thousand runs. Interned strings go
    when nothing holds them any more."""
    return {k: sys.intern(v) if type(v) is str else v for k, v in values.items()}


def _slim_meta(meta: dict[str, Any]) -> dict[str, Any]:
    keep = ("name", "namespace", "uid", "deletionTimestamp", "resourceVersion")
    slim = {k: meta[k] for k in keep if k in meta}
    labels = meta.get("labels")
    if isinstance(labels, dict):
        slim["labels"] = interned(labels)
    elif labels is not None:
        slim["labels"] = labels
    if type(slim.get("namespace")) is str:
        slim["namespace"] = sys.intern(slim["namespace"])
    return slim


def with_interned_conditions(body: dict[str, Any]) -> dict[str, Any]:
    """The body with its status conditions' string values interned (a new dict when there
    are any; the given one is not changed)."""
    status = body.get("status")
    conditions = status.get("conditions") if isinstance(status, dict) else None
    if not isinstance(status, dict) or not isinstance(conditions, list) or not conditions:
        return body
    conditions = [interned(c) if isinstance(c, dict) else c for c in conditions]
    return {**body, "status": {**status, "conditions": conditions}}


def without_managed_fields(body: dict[str, Any]) -> dict[str, Any]:
    """managedFields is half of a small run's body and nothing here reads it."""
    meta = body.get("metadata") or {}
    if "managedFields" not in meta:
        return body
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def slim_job(body: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": _slim_meta(body.get("metadata") or {}), "status": body.get("status") or {}}


def slim_pod(body: dict[str, Any]) -> dict[str, Any]:
    status = body.get("status") or {}
    return {
        "metadata": _slim_meta(body.get("metadata") or {}),
        "status": {
            k: status[k] for k in ("phase", "reason", "message", "containerStatuses") if k in status
        },
    }


def _workflow_of(body: dict[str, Any]) -> str | None:
    ref = ((body.get("spec") or {}).get("workflowRef") or {}).get("name")
    return str(ref) if ref else None


GONE_KEEP = 3600.0
GONE_MAX = 10_000


def _owned_by_run(body: dict[str, Any]) -> bool:
    return any(r.get("kind") == "WorkflowRun" and r.get("controller")
               for r in (body.get("metadata") or {}).get("ownerReferences") or [])


PinKey = tuple[str, str, str]  # namespace, Workflow uid, generation


def _pin_key(namespace: str, status: dict[str, Any]) -> PinKey | None:
    pinned = status.get("workflow")
    if not isinstance(pinned, dict) or not pinned.get("uid") or pinned.get("generation") is None:
        return None  # an inline spec, or not pinned yet
    return namespace, str(pinned["uid"]), str(pinned["generation"])


class SharedSpecs:
    """One copy of each pinned spec for all the cached runs of a Workflow generation.

    Every run pins a copy of its Workflow's spec in its status, and every watch event brings
    a freshly decoded one: 10,000 runs of one Workflow held 10,000 equal copies. A run's copy
    is swapped for the shared one only when it is equal to it (status is hostile input like
    any field: a run whose pinned spec was edited keeps its own). Counted by the runs using
    it, dropped with the last one. The reconciler's parsed model of it is shared the same way
    (`parsed`), and with it the DAG the engine caches per model.
    """

    def __init__(self) -> None:
        self._entries: dict[PinKey, list[Any]] = {}  # key -> [spec, runs using it, model]
        self._by_id: dict[int, PinKey] = {}  # id(spec) -> key; the entry keeps spec alive

    def __len__(self) -> int:
        return len(self._entries)

    def parsed(self, spec: dict[str, Any]) -> WorkflowSpec | None:
        """The model of a shared spec, validated once for all the runs sharing it (raises
        as `model_validate` does); None when `spec` is not a shared one."""
        key = self._by_id.get(id(spec))
        entry = self._entries.get(key) if key is not None else None
        if entry is None or entry[0] is not spec:
            return None
        if entry[2] is None:
            entry[2] = WorkflowSpec.model_validate(spec)
        model: WorkflowSpec = entry[2]
        return model

    def share(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """The body with the shared spec (a new dict; the given one is not changed), counted
        as one more user; the body itself when its spec is not shared."""
        status = body.get("status")
        if not isinstance(status, dict):
            return body
        spec = status.get("workflowSpec")
        key = _pin_key(namespace, status)
        if not isinstance(spec, dict) or key is None:
            return body
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = [spec, 0, None]
            self._by_id[id(spec)] = key
        elif entry[0] is not spec and entry[0] != spec:
            return body  # the same generation pinned with other content: keep its own
        entry[1] += 1
        if entry[0] is spec:
            return body
        return {**body, "status": {**status, "workflowSpec": entry[0]}}

    def release(self, namespace: str, body: dict[str, Any] | None) -> None:
        """A body that `share` counted leaves the cache."""
        status = (body or {}).get("status")
        if not isinstance(status, dict):
            return
        key = _pin_key(namespace, status)
        entry = self._entries.get(key) if key is not None else None
        if key is None or entry is None or entry[0] is not status.get("workflowSpec"):
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._entries[key]
            del self._by_id[id(entry[0])]


class Store:
    def __init__(self) -> None:
        self.runs: dict[Key, dict[str, Any]] = {}
        self.specs = SharedSpecs()
        self.workflows: dict[Key, dict[str, Any]] = {}
        # (namespace, workflow) -> names of its runs, and of those not started / not pinned.
        # Every finished run asks for the waiting runs of its workflow: a scan of all runs
        # made that O(runs) per finish, O(runs^2) for a burst (4% of the CPU at 600 runs).
        self._by_workflow: defaultdict[Key, set[str]] = defaultdict(set)
        self._unstarted: defaultdict[Key, set[str]] = defaultdict(set)
        self._unpinned: defaultdict[Key, set[str]] = defaultdict(set)
        # uid -> key: a freed step slot wakes the runs of its first waiters, named by uid.
        self._by_uid: dict[str, Key] = {}
        # Deleted runs owned by another run (sub-workflow children): key -> (monotonic time,
        # last body), so the parent step sees that its child was deleted instead of
        # creating it again. Kept GONE_KEEP seconds, at most GONE_MAX of them.
        self.gone_children: dict[Key, tuple[float, dict[str, Any]]] = {}
        # The resourceVersion our last status write of a Workflow got back (echo detection).
        # The last few resourceVersions our status writes of each Workflow got: a write's
        # echo can arrive after the next write (a busy watch), and is still nothing new.
        self._workflow_written: dict[Key, tuple[str, ...]] = {}
        self.jobs: defaultdict[Key, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.pods: defaultdict[Key, dict[str, dict[str, Any]]] = defaultdict(dict)
        # After our own status write: (resourceVersion it was based on, body the server returned).
        self._written: dict[Key, tuple[str, dict[str, Any]]] = {}
        # (namespace, Job name) -> what the engine last saw of that Job (observe_job).
        self._observed: dict[Key, ObservedJob] = {}

    # -- runs ---------------------------------------------------------------
    def put_run(self, key: Key, body: dict[str, Any] | None) -> None:
        if body is not None:
            body = self.specs.share(key[0], with_interned_conditions(without_managed_fields(body)))
        old = self.runs.get(key)
        self.specs.release(key[0], old)
        self._index_run(key, old, body)
        if body is None and old is not None and _owned_by_run(old):
            self._remember_gone(key, old)
        elif body is not None:
            self.gone_children.pop(key, None)
        if body is None:
            self.runs.pop(key, None)
            self._written.pop(key, None)
            for name in self.jobs.pop(key, {}):
                self._observed.pop((key[0], name), None)
        else:
            self.runs[key] = body
            self._caught_up(key, body)

    def _caught_up(self, key: Key, body: dict[str, Any]) -> None:
        """Drop our last write's body once the watch has shown any other version than the one
        it was based on: `run()` would prefer the watched body from then on anyway. Left for
        `run()` to drop, it stayed as long as the run had no further reconcile: a second
        copy of every quiet run's body (issue 14, memory with 10,000 active runs)."""
        written = self._written.get(key)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if written is not None and rv != written[0]:
            del self._written[key]

    def _index_run(self, key: Key, old: dict[str, Any] | None,
                   new: dict[str, Any] | None) -> None:
        namespace, name = key
        if old is not None:
            self._by_uid.pop((old.get("metadata") or {}).get("uid", ""), None)
        if new is not None and (uid := (new.get("metadata") or {}).get("uid")):
            self._by_uid[uid] = key
        if old is not None and (workflow := _workflow_of(old)) is not None:
            for index in (self._by_workflow, self._unstarted, self._unpinned):
                names = index.get((namespace, workflow))
                if names is not None:
                    names.discard(name)
                    if not names:
                        del index[(namespace, workflow)]
        if new is None or (workflow := _workflow_of(new)) is None:
            return
        status = new.get("status") or {}
        self._by_workflow[(namespace, workflow)].add(name)
        if not status.get("startedAt"):
            self._unstarted[(namespace, workflow)].add(name)
        if not status.get("workflowSpec"):
            self._unpinned[(namespace, workflow)].add(name)

    def _remember_gone(self, key: Key, body: dict[str, Any]) -> None:
        now = time.monotonic()
        while self.gone_children:  # oldest first (insertion order): O(1) per deletion
            oldest = next(iter(self.gone_children))
            if (now - self.gone_children[oldest][0] <= GONE_KEEP
                    and len(self.gone_children) < GONE_MAX):
                break
            del self.gone_children[oldest]
        self.gone_children.pop(key, None)
        self.gone_children[key] = (now, body)

    def gone_child(self, key: Key) -> dict[str, Any] | None:
        """The last body of a deleted child run under ``key``, if it went lately."""
        entry = self.gone_children.get(key)
        return entry[1] if entry is not None else None

    def run_key(self, uid: str) -> Key | None:
        """The key of the cached run with this uid, if any."""
        return self._by_uid.get(uid)

    def own_write(self, key: Key, body: dict[str, Any]) -> bool:
        """Whether a watched run body is the echo of our own last status write (the same
        resourceVersion the server returned to it): it holds nothing the reconcile that made
        it did not know, so it needs no reconcile of its own."""
        written = self._written.get(key)
        if written is None:
            return False
        rv = (body.get("metadata") or {}).get("resourceVersion")
        return rv is not None and rv == (written[1].get("metadata") or {}).get("resourceVersion")

    def run(self, key: Key) -> dict[str, Any] | None:
        """The newest body we know: the watch's, unless our own write is newer.

        If the watched body still has the resourceVersion our last write was
        based on, the watch has not caught up and the body the server returned
        to our patch is the newer one. Any other version is at least as new.
        """
        body = self.runs.get(key)
        written = self._written.get(key)
        if body is None or written is None:
            return body
        based_on, newer = written
        if body.get("metadata", {}).get("resourceVersion") == based_on:
            return newer
        del self._written[key]
        return body

    def wrote_run(self, key: Key, based_on: str, body: dict[str, Any]) -> None:
        self._written[key] = (based_on, without_managed_fields(body))

    # -- workflows ----------------------------------------------------------
    def put_workflow(self, key: Key, body: dict[str, Any] | None) -> None:
        if body is None:
            self.workflows.pop(key, None)
            self._workflow_written.pop(key, None)
        else:
            self.workflows[key] = body

    def wrote_workflow(self, key: Key, body: dict[str, Any]) -> None:
        """Our status write of a Workflow, as the server returned it."""
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv:
            self._workflow_written[key] = (*self._workflow_written.get(key, ())[-3:], str(rv))

    def own_workflow_write(self, key: Key, body: dict[str, Any]) -> bool:
        """Whether a watched Workflow is the echo of one of our last status writes: the very
        version the server returned to it, so nothing in it is news to the reconcile that
        wrote it (a change by anyone else makes another version, with its own event)."""
        rv = (body.get("metadata") or {}).get("resourceVersion")
        return rv is not None and str(rv) in self._workflow_written.get(key, ())

    def runs_of_workflow(self, namespace: str, workflow: str) -> list[dict[str, Any]]:
        return self._named(namespace, self._by_workflow.get((namespace, workflow)))

    def unstarted_runs(self, namespace: str, workflow: str) -> list[dict[str, Any]]:
        """Runs of the workflow whose status has no startedAt (waiting, or not seen yet)."""
        return self._named(namespace, self._unstarted.get((namespace, workflow)))

    def unpinned_runs(self, namespace: str, workflow: str) -> list[dict[str, Any]]:
        """Runs of the workflow whose status holds no pinned workflowSpec yet."""
        return self._named(namespace, self._unpinned.get((namespace, workflow)))

    def _named(self, namespace: str, names: set[str] | None) -> list[dict[str, Any]]:
        runs = self.runs
        return [runs[(namespace, n)] for n in sorted(names or ()) if (namespace, n) in runs]

    # -- jobs and pods --------------------------------------------------------
    # A step's Job and pod send about eight watch events (pod created, bound, running,
    # terminated, its finalizer removed; the Job's active count, uncounted pods, Complete);
    # only two or three change what `observe_job` reports. The others were each a reconcile
    # (facts, plan, diff) that ended with nothing to do: the put_* below say whether the
    # engine's view of the Job changed, and the watch handlers enqueue the run only then.

    def put_job(self, run: Key, name: str, body: dict[str, Any] | None) -> bool:
        """Store a Job's event; whether it changed what the engine sees of the Job."""
        if body is None:
            self.jobs.get(run, {}).pop(name, None)
            self.pods.pop((run[0], name), None)
            self._observed.pop((run[0], name), None)
            return True
        self.jobs[run][name] = slim_job(body)
        return self._observe(run, name)

    def put_pod(self, job: Key, name: str, body: dict[str, Any] | None,
                run: Key | None = None) -> bool:
        """Store a pod's event; whether it changed what the engine sees of its Job (always
        True when `run` is not given or the Job is not in the cache yet)."""
        if body is None:
            self.pods.get(job, {}).pop(name, None)
        else:
            self.pods[job][name] = slim_pod(body)
        return True if run is None else self._observe(run, job[1])

    def _observe(self, run: Key, name: str) -> bool:
        job = self.jobs.get(run, {}).get(name)
        if job is None:
            return True
        seen = observe_job(job, list(self.pods.get((run[0], name), {}).values()))
        if seen.state == "Active":
            # An active Job's start time changes no plan: only adopt() reads it, for a Job
            # the status does not record, and the reconcile that adopts it comes anyway.
            seen = replace(seen, started_at=None)
        if self._observed.get((run[0], name)) == seen:
            return False
        self._observed[(run[0], name)] = seen
        return True

    def only_active(self, namespace: str, job: str) -> bool:
        """Whether all that is known of the Job is that it exists and runs."""
        seen = self._observed.get((namespace, job))
        return seen is not None and seen.state == "Active"

    def jobs_of(self, run: Key) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        out = []
        for name, job in self.jobs.get(run, {}).items():
            pods = list(self.pods.get((run[0], name), {}).values())
            out.append((job, pods))
        return out
