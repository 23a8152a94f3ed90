"""Parsing runs and Workflows for the reconciler, with the parsed specs kept.

Parsing a 1,000-step spec with pydantic costs several times more than planning it, and a
run's pinned spec never changes once pinned; a Workflow's spec changes only with its
resourceVersion. So each is parsed once and the same model object is handed to the engine
every reconcile, which also lets the engine reuse the DAG it built from it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from taskforge.api import WorkflowRun, WorkflowSpec
from taskforge.engine.facts import WorkflowFacts
from taskforge.handlers.store import Store


class RunParser:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._workflow_specs: dict[tuple[str, str, str], WorkflowSpec] = {}
        self._pinned: dict[str, WorkflowSpec] = {}

    def workflow_facts(self, namespace: str, name: str) -> WorkflowFacts | None:
        """The referenced Workflow as it is now (for a run that has not pinned a spec yet);
        None when it is missing or its spec does not parse."""
        body = self.store.workflows.get((namespace, name))
        if body is None:
            return None
        meta = body.get("metadata") or {}
        cache_key = (namespace, name, str(meta.get("resourceVersion")))
        spec = self._workflow_specs.get(cache_key)
        if spec is None:
            try:
                spec = WorkflowSpec.model_validate(body.get("spec") or {})
            except ValidationError:
                return None
            self._workflow_specs = {
                k: v for k, v in self._workflow_specs.items() if k[:2] != (namespace, name)
            }
            self._workflow_specs[cache_key] = spec
        return WorkflowFacts(
            name=name, generation=int(meta.get("generation") or 1), uid=meta.get("uid"), spec=spec
        )

    def run(self, body: dict[str, Any]) -> WorkflowRun:
        """The run, its pinned spec parsed once per run (and once per Workflow generation
        when the store shares the pinned spec between runs)."""
        status = body.get("status") or {}
        pinned = status.get("workflowSpec")
        uid = str((body.get("metadata") or {}).get("uid", ""))
        if not pinned or not uid:
            return WorkflowRun.model_validate(body)
        spec = self._pinned.get(uid)
        if spec is None:
            spec = self.store.specs.parsed(pinned) or WorkflowSpec.model_validate(pinned)
            self._pinned[uid] = spec
        rest = {k: v for k, v in status.items() if k != "workflowSpec"}
        run = WorkflowRun.model_validate({**body, "status": rest})
        assert run.status is not None
        return run.model_copy(
            update={"status": run.status.model_copy(update={"workflow_spec": spec})}
        )

    def forget(self, uid: str) -> None:
        """A finished run's pinned spec is no longer needed."""
        self._pinned.pop(uid, None)
