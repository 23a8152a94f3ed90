"""The kopf settings the hot path relies on stay true as handlers are added.

The operator turns kopf's diff-base off (registration.NoDiffBase) because only
change and daemon handlers read it; these tests fail the day someone registers
one, instead of that handler silently seeing no changes.
"""

from __future__ import annotations

import kopf
from taskforge.handlers import registration


def test_only_event_handlers_are_registered() -> None:
    registry = kopf.get_default_registry()
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._spawning.get_all_handlers()) == []
    watched = {h.fn.__name__ for h in registry._watching.get_all_handlers()}
    assert {"job_event", "pod_event"} <= watched


def test_the_diff_base_costs_nothing() -> None:
    storage = registration.NoDiffBase()
    body = kopf.Body({"metadata": {"name": "r"}, "spec": {"x": 1}, "status": {"big": [1] * 1000}})
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
