"""The JSON shapes of the API (see /tmp/web-contract.md, kept in the README's UI section):
pure functions from Kubernetes objects to what a page needs.

Computed once per object change and shared by every viewer of it (the live hub serializes
each shape once per watch event, not once per viewer).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from taskforge.api.steps import STEP_TYPES
from taskforge.engine.naming import LABEL_WORKFLOW
from taskforge.engine.rerun import Layout, layout
from taskforge.engine.triggers import LABEL_TRIGGER


def _parse(ts: Any) -> datetime | None:
    if not isinstance(ts, str) or not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def iso(when: datetime) -> str:
    """UTC, seconds, Z: the form of creationTimestamp, so such strings compare as times."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_of(ts: Any) -> str | None:
    when = _parse(ts)
    return iso(when) if when else None


def run_workflow(run: dict[str, Any]) -> str | None:
    meta, spec = run.get("metadata") or {}, run.get("spec") or {}
    ref = (spec.get("workflowRef") or {}).get("name")
    return str(ref) if ref else (meta.get("labels") or {}).get(LABEL_WORKFLOW)


def _trigger(meta: dict[str, Any], spec: dict[str, Any]) -> str:
    """What started the run: spec.trigger.type, else the trigger label, else "manual" (the
    CRD's default: a run made with kubectl carries no trigger at all)."""
    trigger = spec.get("trigger")
    kind = trigger.get("type") if isinstance(trigger, dict) else None
    if not isinstance(kind, str) or not kind:
        kind = (meta.get("labels") or {}).get(LABEL_TRIGGER)
    return kind if isinstance(kind, str) and kind else "manual"


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    meta, spec, status = run.get("metadata") or {}, run.get("spec") or {}, run.get("status") or {}
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "workflow": run_workflow(run),
        "phase": status.get("phase") or "Pending",
        "progress": status.get("progress"),
        "startedAt": status.get("startedAt"),
        "finishedAt": status.get("finishedAt"),
        "created": meta.get("creationTimestamp"),
        "duration": status.get("duration"),
        "message": status.get("message"),
        "trigger": _trigger(meta, spec),
        "cancelRequested": bool(spec.get("cancel")),
        "resourceVersion": meta.get("resourceVersion"),
    }


def followed_spec(run: dict[str, Any]) -> dict[str, Any] | None:
    """The workflow spec the run pinned (or carries inline); None: ask for the Workflow."""
    for candidate in ((run.get("status") or {}).get("workflowSpec"),
                      (run.get("spec") or {}).get("workflowSpec")):
        if isinstance(candidate, dict):
            return candidate
    return None


def _step_type(step: dict[str, Any]) -> str:
    return next((t for t in STEP_TYPES if step.get(t) is not None),
                next((k for k in ("forEach", "workflow") if step.get(k) is not None), "unknown"))


def _phase(value: Any) -> str:
    """A step's phase as the page uses it (a class name): letters, else Pending."""
    return value if isinstance(value, str) and value.isascii() and value.isalpha() else "Pending"


def _seconds(start: Any, end: Any) -> float | None:
    a, b = _parse(start), _parse(end)
    return round((b - a).total_seconds(), 3) if a and b else None


_LAYOUTS: OrderedDict[tuple[str, str, str], Layout] = OrderedDict()
_LAYOUTS_MAX = 256


def _layout_of(run: dict[str, Any], spec: dict[str, Any] | None) -> Layout:
    """The graph of the run's spec, memoised per run while it follows its pinned spec (a
    pinned spec never changes), else per content of the spec: validating a 1,000-step spec
    costs ~100 ms, which every status change of the run (one render shared by all its
    viewers) and every page load would pay again."""
    if spec is None:
        return layout(None)
    status: dict[str, Any] = run.get("status") or {}
    uid = str((run.get("metadata") or {}).get("uid") or "")
    if uid and id(status.get("workflowSpec")) == id(spec):  # the run's pinned spec
        generation = (status.get("workflow") or {}).get("generation") or 0
        key = (uid, str(generation),
               str(len(spec.get("steps") or []) + len(spec.get("finally") or [])))
    else:  # the Workflow's current spec (a run not started yet): keyed by its content,
        # whose hash (~5 ms for 1,000 steps) is far cheaper than validating it again
        try:
            text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
        except (TypeError, ValueError):
            return layout(spec)
        key = ("", hashlib.sha256(text.encode()).hexdigest(), "")
    found = _LAYOUTS.get(key)
    if found is None:
        found = _LAYOUTS[key] = layout(spec)
        while len(_LAYOUTS) > _LAYOUTS_MAX:
            _LAYOUTS.popitem(last=False)
    return found


def run_detail(run: dict[str, Any], spec: dict[str, Any] | None) -> dict[str, Any]:
    """The run, its summary and its steps in DAG order (finally last), with the edges."""
    status = run.get("status") or {}
    # status.steps is opaque JSON to the API server (crdgen: OPAQUE_STATUS_FIELDS): only the
    # operator writes it, but a wrong shape must not break every page of the run
    given = status.get("steps")
    observed: dict[str, Any] = given if isinstance(given, dict) else {}
    graph = _layout_of(run, spec)
    declared = {str(s.get("name")): s for key in ("steps", "finally")
                for s in (spec or {}).get(key) or [] if isinstance(s, dict)}
    ordered = set(graph.order)
    names = graph.order + [n for n in observed if n not in ordered]
    finals = set(graph.finally_steps)
    steps = []
    for name in names:
        found = observed.get(name)
        st: dict[str, Any] = found if isinstance(found, dict) else {}
        steps.append({
            "name": name,
            "type": _step_type(declared.get(name) or {}),
            "phase": _phase(st.get("phase")),
            "attempts": int(st.get("attempts") or 0),
            "startedAt": st.get("startedAt"),
            "finishedAt": st.get("finishedAt"),
            "durationSeconds": _seconds(st.get("startedAt"), st.get("finishedAt")),
            "message": st.get("message"),
            "exitCode": st.get("exitCode"),
            "outputs": st.get("outputs"),
            "nextAttemptAt": st.get("nextAttemptAt"),
            "dependsOn": graph.deps.get(name, []),
            "finally": name in finals,
            "attemptHistory": [
                {k: a.get(k) for k in ("attempt", "startedAt", "finishedAt", "exitCode",
                                       "reason", "message")}
                for a in st.get("attemptHistory") or [] if isinstance(a, dict)
            ],
        })
    edges = [[dep, name] for name in names for dep in graph.deps.get(name, [])]
    return {"run": run, "summary": run_summary(run), "steps": steps, "edges": edges,
            "finally": graph.finally_steps}


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == kind:
            return c
    return None


def _last_run(wf: dict[str, Any], run: dict[str, Any] | None) -> dict[str, Any] | None:
    """The newest run: from the run itself when the caller listed runs, else from the
    Workflow's status (lastRun/lastRunTime, kept by the operator), which names it but has no
    phase. The live workflows stream has only the Workflow, so this is all it can say."""
    if run is not None:
        return {k: run_summary(run)[k] for k in ("name", "phase", "startedAt", "created")}
    status = wf.get("status")
    name = status.get("lastRun") if isinstance(status, dict) else None
    if not isinstance(name, str) or not name:
        return None
    assert isinstance(status, dict)
    created = status.get("lastRunTime")
    return {"name": name, "phase": None, "startedAt": None,
            "created": created if isinstance(created, str) else None}


def workflow_summary(wf: dict[str, Any], last_run: dict[str, Any] | None = None) -> dict[str, Any]:
    meta, spec = wf.get("metadata") or {}, wf.get("spec") or {}
    steps = [s for s in spec.get("steps") or [] if isinstance(s, dict)]
    triggers = spec.get("triggers")
    schedule = triggers.get("schedule") if isinstance(triggers, dict) else None
    valid = _condition(wf, "Valid")
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "steps": len(steps),
        "stepNames": [s.get("name") for s in steps],
        "schedule": schedule.get("cron") if isinstance(schedule, dict) else None,
        "suspended": bool(schedule.get("suspend")) if isinstance(schedule, dict) else False,
        "valid": None if valid is None else valid.get("status") == "True",
        "validMessage": None if valid is None else valid.get("message"),
        "params": [p for p in spec.get("params") or [] if isinstance(p, dict)],
        "lastRun": _last_run(wf, last_run),
        "created": meta.get("creationTimestamp"),
        "resourceVersion": meta.get("resourceVersion"),
    }


def event_of_run(event: dict[str, Any], namespace: str, run: str) -> bool:
    """Whether an Event is about the run: the run itself, or its Jobs and pods (which are
    named after it)."""
    involved = event.get("involvedObject") or {}
    if ((event.get("metadata") or {}).get("namespace") or involved.get("namespace")) != namespace:
        return False
    name = str(involved.get("name") or "")
    return name == run or (name.startswith(f"{run}-") and involved.get("kind") in ("Job", "Pod"))


def event_view(event: dict[str, Any]) -> dict[str, Any]:
    involved = event.get("involvedObject") or {}
    meta = event.get("metadata") or {}
    return {
        "name": meta.get("name"),
        "resourceVersion": meta.get("resourceVersion"),
        "type": event.get("type"),
        "reason": event.get("reason"),
        "message": event.get("message"),
        "count": event.get("count") or 1,
        "first": event.get("firstTimestamp") or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp"),
        "last": event.get("lastTimestamp") or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp"),
        "object": f"{involved.get('kind')}/{involved.get('name')}",
    }
