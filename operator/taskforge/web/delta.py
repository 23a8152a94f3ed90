"""What a run page's live stream sends: the page's own shape of a run, and on each change only
the steps that changed.

A 1,000-step run's RunDetail is ~450 KiB, about half of it the WorkflowRun object itself,
which the page never reads; sending all of it to every viewer on every status write made an
update reach the browser ~700 ms after the write. The live shape drops `run` (and each step's
`dependsOn`, which `edges` already carries), and an update is the run's summary plus the steps
whose view differs from the hub's previous rendering of the same run: a few hundred bytes for
one step's change.

A change list is only right for a viewer that holds exactly that previous rendering, so each
`Update` names its `base` resourceVersion and also carries the whole live detail: the stream
sends the change list when the viewer's last version is `base`, else the whole detail (a viewer
that just took its snapshot, or after a watch gap). Both are rendered once per event and the
same bytes are shared by every viewer.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from taskforge.web import views
from taskforge.web.hub import Update, resource_version, sse


def live_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """RunDetail as the run page reads it: no `run` object, no per-step `dependsOn`."""
    return {
        "summary": detail["summary"],
        "steps": [{k: v for k, v in s.items() if k != "dependsOn"} for s in detail["steps"]],
        "edges": detail["edges"],
        "finally": detail["finally"],
    }


@dataclass(frozen=True)
class _Seen:
    rv: int
    names: list[str]
    edges: list[list[str]]
    finally_steps: list[str]
    steps: dict[str, dict[str, Any]]


class DetailRenderer:
    """The hub's renderer of the `detail` shape; remembers the last rendering of each run
    (at most `max_runs`, least recently rendered dropped) to compute change lists."""

    def __init__(self, max_runs: int = 512) -> None:
        self.max_runs = max_runs
        self._seen: OrderedDict[tuple[str, str], _Seen] = OrderedDict()
        self._specs: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def remember_spec(self, run: dict[str, Any], spec: dict[str, Any] | None) -> None:
        """The Workflow spec a viewer's snapshot used for a run that has not pinned one yet,
        so updates before the operator pins it keep the same graph (the watch gives only the
        run, and a render may not make requests)."""
        uid = str((run.get("metadata") or {}).get("uid") or "")
        if uid and spec is not None and views.followed_spec(run) is None:
            self._specs[uid] = spec
            while len(self._specs) > self.max_runs:
                self._specs.popitem(last=False)

    def __call__(self, kind: str, run: dict[str, Any]) -> bytes | Update:
        meta = run.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        spec = views.followed_spec(run)
        if spec is None:
            spec = self._specs.get(str(meta.get("uid") or ""))
        else:
            self._specs.pop(str(meta.get("uid") or ""), None)
        detail = live_detail(views.run_detail(run, spec))
        full = sse("run", {"type": kind, "detail": detail})
        previous = self._seen.pop(key, None)
        if kind == "DELETED":
            self._specs.pop(str(meta.get("uid") or ""), None)
            return full
        names = [str(s["name"]) for s in detail["steps"]]
        now = _Seen(resource_version(run), names, detail["edges"], detail["finally"],
                    {str(s["name"]): s for s in detail["steps"]})
        self._seen[key] = now
        while len(self._seen) > self.max_runs:
            self._seen.popitem(last=False)
        if (previous is None or not previous.rv or not now.rv or previous.names != names
                or previous.edges != now.edges or previous.finally_steps != now.finally_steps):
            return full  # first sight, or the graph itself changed: nothing to diff against
        changed = [s for s in detail["steps"] if previous.steps.get(str(s["name"])) != s]
        changes = sse("run", {"type": kind, "base": previous.rv, "changes": {
            "summary": detail["summary"], "steps": changed}})
        return Update(previous.rv, changes, full)
