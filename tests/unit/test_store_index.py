"""The store's per-workflow run indexes answer as a scan of every run would (issue 14).

Table tests: a sequence of watch events (put_run) and, after it, the names each query gives.
"""

from __future__ import annotations

from typing import Any

import pytest
from taskforge.handlers.store import Store

Event = tuple[tuple[str, str], dict[str, Any] | None]


def run(ns: str, name: str, workflow: str | None, **status: Any) -> Event:
    spec = {"workflowRef": {"name": workflow}} if workflow else {}
    return (ns, name), {"metadata": {"name": name, "namespace": ns}, "spec": spec,
                        "status": status}


STARTED = {"startedAt": "2026-11-30T00:00:00Z"}
PINNED: dict[str, Any] = {"workflowSpec": {"steps": []}}

CASES: list[tuple[str, list[Event], dict[str, list[str]]]] = [
    ("new runs are waiting and unpinned",
     [run("a", "r1", "w"), run("a", "r2", "w")],
     {"all": ["r1", "r2"], "unstarted": ["r1", "r2"], "unpinned": ["r1", "r2"]}),
    ("a started, pinned run leaves both waiting sets",
     [run("a", "r1", "w"), run("a", "r2", "w"), run("a", "r1", "w", **STARTED, **PINNED)],
     {"all": ["r1", "r2"], "unstarted": ["r2"], "unpinned": ["r2"]}),
    ("pinned but not started",
     [run("a", "r1", "w", **PINNED)],
     {"all": ["r1"], "unstarted": ["r1"], "unpinned": []}),
    ("a deleted run is gone from every set",
     [run("a", "r1", "w"), (("a", "r1"), None)],
     {"all": [], "unstarted": [], "unpinned": []}),
    ("other namespaces and workflows are not counted",
     [run("b", "r1", "w"), run("a", "r2", "other"), run("a", "r3", None), run("a", "r4", "w")],
     {"all": ["r4"], "unstarted": ["r4"], "unpinned": ["r4"]}),
    ("a changed workflowRef moves the run",
     [run("a", "r1", "w"), run("a", "r1", "other")],
     {"all": [], "unstarted": [], "unpinned": []}),
    ("a status that loses startedAt puts it back (as a scan would see it)",
     [run("a", "r1", "w", **STARTED), run("a", "r1", "w")],
     {"all": ["r1"], "unstarted": ["r1"], "unpinned": ["r1"]}),
]


@pytest.mark.parametrize(("events", "expected"), [(e, x) for _, e, x in CASES],
                         ids=[c[0] for c in CASES])
def test_indexes_match_a_scan(events: list[Event], expected: dict[str, list[str]]) -> None:
    store = Store()
    for key, body in events:
        store.put_run(key, body)
    names = {
        "all": store.runs_of_workflow("a", "w"),
        "unstarted": store.unstarted_runs("a", "w"),
        "unpinned": store.unpinned_runs("a", "w"),
    }
    assert {k: [r["metadata"]["name"] for r in v] for k, v in names.items()} == expected
    scan = sorted(n for (ns, n), b in store.runs.items()
                  if ns == "a" and (b.get("spec") or {}).get("workflowRef", {}).get("name") == "w")
    assert [r["metadata"]["name"] for r in names["all"]] == scan


@pytest.mark.parametrize(("written", "seen", "echo"), [
    (["5"], "5", True),            # the version our write got back
    (["5"], "6", False),           # someone changed it after our write
    ([], "5", False),              # we never wrote it
    (["5", "7"], "5", True),       # the first write's echo, seen after the second write
    (["5", "7"], "6", False),      # someone else's change between our two writes
    (["1", "2", "3", "4", "5"], "1", False),  # only the last four are remembered
])
def test_workflow_echo(written: list[str], seen: str, echo: bool) -> None:
    store = Store()
    for rv in written:
        store.wrote_workflow(("a", "w"), {"metadata": {"resourceVersion": rv}})
    assert store.own_workflow_write(("a", "w"), {"metadata": {"resourceVersion": seen}}) is echo


def _with_uid(ns: str, name: str, uid: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "uid": uid}, "spec": {}, "status": {}}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([(("a", "r1"), _with_uid("a", "r1", "u1"))], {"u1": ("a", "r1"), "u2": None}),
        ([(("a", "r1"), _with_uid("a", "r1", "u1")), (("a", "r1"), None)], {"u1": None}),
        # deleted and created again under the same name: a new uid, the old one is gone
        ([(("a", "r1"), _with_uid("a", "r1", "u1")), (("a", "r1"), _with_uid("a", "r1", "u9"))],
         {"u1": None, "u9": ("a", "r1")}),
    ],
)
def test_run_key_by_uid(events: list[Event], expected: dict[str, Any]) -> None:
    """A freed step slot names its waiters by run uid; the store finds their runs."""
    store = Store()
    for key, body in events:
        store.put_run(key, body)
    assert {uid: store.run_key(uid) for uid in expected} == expected


def _child(name: str, phase: str | None = "Running", owner: str = "WorkflowRun"
           ) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "a", "uid": f"uid-{name}",
                         "ownerReferences": [{"kind": owner, "name": "p", "uid": "pu",
                                              "controller": True}]},
            "spec": {}, "status": {"phase": phase}}


def test_a_deleted_child_run_is_remembered_and_forgotten_when_created_again() -> None:
    """The parent's workflow step must tell 'deleted' from 'not seen yet' (subflow.advance)."""
    store = Store()
    store.put_run(("a", "kid"), _child("kid"))
    store.put_run(("a", "plain"), _with_uid("a", "plain", "u"))
    store.put_run(("a", "cron-owned"), _child("cron-owned", owner="CronJob"))
    assert store.gone_child(("a", "kid")) is None
    for key in (("a", "kid"), ("a", "plain"), ("a", "cron-owned")):
        store.put_run(key, None)
    gone = store.gone_child(("a", "kid"))
    assert gone is not None and gone["status"]["phase"] == "Running"
    assert store.gone_child(("a", "plain")) is None  # not a child run
    assert store.gone_child(("a", "cron-owned")) is None
    store.put_run(("a", "kid"), _child("kid", "Pending"))
    assert store.gone_child(("a", "kid")) is None
