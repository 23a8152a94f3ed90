"""What the store keeps per cached run (issue 14, memory with 10,000 active runs): one copy of
a pinned spec per Workflow generation, and no second body after the watch has caught up with
our own status write. The store must answer exactly as before."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import ValidationError
from taskforge.handlers.store import Store

SPEC: dict[str, Any] = {"steps": [{"name": "only", "log": {"message": "hi"}}],
                        "history": {"successfulRuns": 5}}


def run(name: str, rv: str = "1", *, spec: dict[str, Any] | None = None, generation: int = 1,
        workflow_uid: str = "wf-uid", ns: str = "ns") -> dict[str, Any]:
    """A started run of Workflow `w`, its spec decoded afresh (a copy) as a watch event is."""
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                         "resourceVersion": rv},
            "spec": {"workflowRef": {"name": "w"}},
            "status": {"phase": "Running", "startedAt": "2026-12-01T00:00:00Z",
                       "workflow": {"name": "w", "uid": workflow_uid, "generation": generation},
                       "workflowSpec": copy.deepcopy(spec if spec is not None else SPEC)}}


def pinned(store: Store, name: str, ns: str = "ns") -> Any:
    body = store.run((ns, name))
    assert body is not None
    return body["status"]["workflowSpec"]


def test_runs_of_one_workflow_generation_share_one_spec() -> None:
    store = Store()
    for i in range(3):
        store.put_run(("ns", f"r{i}"), run(f"r{i}"))
    store.put_run(("ns", "r0"), run("r0", rv="2"))  # a later event: a fresh copy again
    assert pinned(store, "r0") is pinned(store, "r1") is pinned(store, "r2")
    assert pinned(store, "r0") == SPEC
    assert len(store.specs) == 1


def test_the_given_body_is_not_changed() -> None:
    store = Store()
    store.put_run(("ns", "r0"), run("r0"))
    body = run("r1")
    own = body["status"]["workflowSpec"]
    store.put_run(("ns", "r1"), body)
    assert body["status"]["workflowSpec"] is own


def test_other_generations_namespaces_and_workflows_are_not_shared() -> None:
    store = Store()
    store.put_run(("ns", "a"), run("a"))
    store.put_run(("ns", "b"), run("b", generation=2))
    store.put_run(("ns", "c"), run("c", workflow_uid="other"))
    store.put_run(("other", "d"), run("d", ns="other"))
    specs = [pinned(store, "a"), pinned(store, "b"), pinned(store, "c"),
             pinned(store, "d", ns="other")]
    assert len({id(s) for s in specs}) == 4
    assert len(store.specs) == 4


def test_an_edited_pinned_spec_is_kept_as_it_is() -> None:
    """Status is hostile input: a run claiming the same generation with another spec must
    not get (or change) the others' spec."""
    store = Store()
    store.put_run(("ns", "a"), run("a"))
    evil = copy.deepcopy(SPEC)
    evil["steps"][0]["log"]["message"] = "edited"
    store.put_run(("ns", "b"), run("b", spec=evil))
    assert pinned(store, "b") == evil
    assert pinned(store, "a") == SPEC
    store.put_run(("ns", "c"), run("c"))
    assert pinned(store, "c") is pinned(store, "a")


def test_inline_and_unpinned_runs_keep_their_own() -> None:
    store = Store()
    inline = run("a")
    del inline["status"]["workflow"]
    store.put_run(("ns", "a"), inline)
    store.put_run(("ns", "b"), {"metadata": {"name": "b", "resourceVersion": "1"},
                                "spec": {"workflowRef": {"name": "w"}}})
    assert pinned(store, "a") == SPEC
    assert len(store.specs) == 0


def test_the_shared_spec_goes_with_its_last_run() -> None:
    store = Store()
    store.put_run(("ns", "a"), run("a"))
    store.put_run(("ns", "b"), run("b"))
    store.put_run(("ns", "a"), None)
    assert len(store.specs) == 1
    store.put_run(("ns", "b"), run("b", rv="2"))  # replaced by a body sharing the same spec
    assert len(store.specs) == 1
    store.put_run(("ns", "b"), None)
    assert len(store.specs) == 0
    store.put_run(("ns", "c"), run("c"))  # a new entry, the spec as it is now
    assert pinned(store, "c") == SPEC and len(store.specs) == 1


def test_a_run_whose_status_loses_its_pin_releases_it() -> None:
    store = Store()
    store.put_run(("ns", "a"), run("a"))
    bare = run("a", rv="2")
    bare["status"] = {"phase": "Pending"}
    store.put_run(("ns", "a"), bare)
    assert len(store.specs) == 0


def test_our_write_is_read_until_the_watch_shows_another_version() -> None:
    store = Store()
    store.put_run(("ns", "a"), run("a", rv="10"))
    written = {**run("a", rv="11"), "status": {"phase": "Succeeded"}}
    store.wrote_run(("ns", "a"), "10", written)
    assert store.run(("ns", "a")) == written  # the watch has not caught up
    store.put_run(("ns", "a"), run("a", rv="10"))  # the same version again: still ours
    assert store.run(("ns", "a")) == written
    echo = {**run("a", rv="11"), "status": {"phase": "Succeeded"}}
    assert store.own_write(("ns", "a"), echo)
    store.put_run(("ns", "a"), echo)
    assert ("ns", "a") not in store._written  # not kept until the run's next reconcile
    assert store.run(("ns", "a")) == echo
    assert not store.own_write(("ns", "a"), echo)  # as after run() dropped it before


def test_the_parsed_model_is_shared_too_and_only_for_a_shared_spec() -> None:
    store = Store()
    store.put_run(("ns", "a"), run("a"))
    store.put_run(("ns", "b"), run("b"))
    model = store.specs.parsed(pinned(store, "a"))
    assert model is not None and model is store.specs.parsed(pinned(store, "b"))
    assert [s.name for s in model.steps] == ["only"]
    assert store.specs.parsed(copy.deepcopy(SPEC)) is None  # an equal dict, not the shared one
    store.put_run(("ns", "a"), None)
    store.put_run(("ns", "b"), None)
    gone = run("c")["status"]["workflowSpec"]
    assert store.specs.parsed(gone) is None


def test_an_invalid_shared_spec_raises_as_validation_does() -> None:
    store = Store()
    store.put_run(("ns", "a"), run("a", spec={"steps": "not a list"}))
    with pytest.raises(ValidationError):
        store.specs.parsed(pinned(store, "a"))
    with pytest.raises(ValidationError):  # not cached as a success
        store.specs.parsed(pinned(store, "a"))


def decoded(obj: Any) -> Any:
    """A fresh decode, as each watch event is: equal strings, distinct objects."""
    return json.loads(json.dumps(obj))


CONDITIONS = [{"type": "Ready", "status": "False", "reason": "Running",
               "message": "1 of 1 steps running", "lastTransitionTime": "2026-12-01T00:00:00Z",
               "observedGeneration": 1}]


def test_condition_strings_are_one_object_across_runs_and_the_bodies_equal() -> None:
    store = Store()
    sent = []
    for name in ("a", "b"):
        body = decoded({**run(name), "status": {**run(name)["status"],
                                                "conditions": CONDITIONS}})
        sent.append(decoded(body))
        store.put_run(("ns", name), body)
    a, b = store.run(("ns", "a")), store.run(("ns", "b"))
    assert a is not None and b is not None
    assert [a, b] == sent  # the same content
    for field in ("type", "status", "reason", "message", "lastTransitionTime"):
        assert a["status"]["conditions"][0][field] is b["status"]["conditions"][0][field]


def test_interning_leaves_the_given_body_and_odd_conditions_alone() -> None:
    store = Store()
    body = decoded({**run("a"), "status": {**run("a")["status"],
                                           "conditions": [*CONDITIONS, "odd", 3]}})
    before = decoded(body)
    conditions = body["status"]["conditions"]
    store.put_run(("ns", "a"), body)
    assert body == before and body["status"]["conditions"] is conditions
    cached = store.run(("ns", "a"))
    assert cached is not None and cached["status"]["conditions"][1:] == ["odd", 3]


def test_job_and_pod_labels_share_their_strings_and_read_the_same() -> None:
    store = Store()
    labels = {"taskforge.io/run": "r1", "taskforge.io/step": "only",
              "taskforge.io/attempt": "1", "batch.kubernetes.io/job-name": "r1-only-1",
              "job-name": "r1-only-1"}
    job = decoded({"metadata": {"name": "r1-only-1", "namespace": "ns", "labels": labels,
                                "resourceVersion": "1"}, "status": {"active": 1}})
    pod = decoded({"metadata": {"name": "p", "namespace": "ns", "labels": labels,
                                "resourceVersion": "1"}, "status": {"phase": "Pending"}})
    store.put_job(("ns", "r1"), "r1-only-1", job)
    store.put_pod(("ns", "r1-only-1"), "p", pod, ("ns", "r1"))
    ((cached_job, (cached_pod,)),) = store.jobs_of(("ns", "r1"))
    assert cached_job["metadata"]["labels"] == labels == cached_pod["metadata"]["labels"]
    assert cached_job["metadata"]["labels"]["job-name"] is \
        cached_pod["metadata"]["labels"]["batch.kubernetes.io/job-name"]
    assert cached_job["metadata"]["namespace"] is cached_pod["metadata"]["namespace"]
