"""Results bigger than status: per-key summaries, the store, loading back, template errors.

Table tests of the pure parts (engine/stored.py, engine/outputs.py, api/resultlog.py); the
adapter's part (log, ConfigMaps) is played here by plain dicts, as enginekit does for Jobs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from enginekit import creates, facts, job, ok, result_json, step, workflow
from taskforge.api.resultlog import (
    MAX_RESULT_BYTES,
    ResultLogError,
    compact,
    log_lines,
    log_ref,
    parse_log,
    summarize,
)
from taskforge.api.run import StepStatus
from taskforge.engine.actions import Plan, StoreResult
from taskforge.engine.context import step_entry
from taskforge.engine.dag import build_cached
from taskforge.engine.facts import LoadedResult, ObservedJob, RunFacts
from taskforge.engine.planner import plan
from taskforge.engine.stored import log_wanted, wanted_results, with_log
from taskforge.engine.templating import TemplateError, render_string, render_tree


def _size(value: Any) -> int:
    return len(compact(value))


@pytest.mark.parametrize(
    ("outputs", "budget", "expected"),
    [
        ({"a": 1}, 100, {"a": 1}),
        ({"small": "ok", "big": "x" * 3000}, 200, {"small": "ok", "_truncated": {"big": 3002}}),
        ({"big": "é" * 2000, "n": 1}, 100, {"n": 1, "_truncated": {"big": 4002}}),
        ({"a": "x" * 90, "b": "y" * 90, "c": 3}, 130,
         {"a": "x" * 90, "c": 3, "_truncated": {"b": 92}}),
        ({"only": "z" * 500}, 50, {"_truncated": {"only": 502}}),
    ],
    ids=["fits", "big key cut, small kept", "utf-8 bytes counted", "smallest first", "all cut"],
)
def test_summaries_truncate_per_key_with_the_true_size(
    outputs: dict[str, Any], budget: int, expected: dict[str, Any]
) -> None:
    summary = summarize(outputs, budget)
    assert summary == expected
    assert _size(summary) <= budget


def test_a_summary_of_thousands_of_keys_fits_and_says_how_many_it_left_out() -> None:
    outputs = {f"key{i:04d}": "v" * 40 for i in range(2000)}
    summary = summarize(outputs, 400)
    assert _size(summary) <= 400
    marker = summary["_truncated"]
    assert marker["…"] + len(marker) - 1 + len(summary) - 1 == 2000


@pytest.mark.parametrize("size", [3_000, 100_000, 900_000])
def test_the_log_format_carries_a_result_exactly(size: int) -> None:
    data = compact({"small": "ok", "big": "é" * (size // 2)})
    ref = log_ref(data)
    text = ("INFO step a succeeded\n" + "\n".join(log_lines(data)) + "\nlate line\n").encode()
    assert parse_log(text, **ref) == data
    with pytest.raises(ResultLogError, match="missing"):
        parse_log(text.replace(log_lines(data)[0].encode(), b""), **ref)


def test_a_result_over_1_mib_cannot_be_announced() -> None:
    with pytest.raises(ResultLogError, match="over the limit of 1,048,576 bytes"):
        parse_log(b"", size=MAX_RESULT_BYTES + 1, sha256="0" * 64, lines=1)


# --- the template error: step, key, and why --------------------------------------------

def _ctx(**steps: dict[str, Any]) -> dict[str, Any]:
    return {"steps": steps}


@pytest.mark.parametrize(
    ("status", "note", "template", "message"),
    [
        (StepStatus(phase="Succeeded", outputs={"x": 1}), None, "{{ steps.a.outputs.small }}",
         "steps.a.outputs.small is absent: step 'a' (Succeeded) reported keys x"),
        (StepStatus(phase="Pending"), None, "{{ steps.a.outputs.small }}",
         "steps.a.outputs.small is absent: step 'a' is Pending and has no outputs"),
        (StepStatus(phase="Succeeded", outputs={"small": 1, "_truncated": {"big": 1234567}},
                    result={"configMap": "cm", "size": 1234600, "sha256": "0" * 64}),
         "configmap ns/cm not found", "{{ steps.a.outputs.big }}",
         "steps.a.outputs.big was truncated (1,234,567 bytes; only a summary of the result is"
         " kept in the run's status; the whole result could not be loaded: configmap ns/cm not"
         " found)"),
        (StepStatus(phase="Succeeded", outputs={"_truncated": {"big": 5000}}), None,
         "{{ steps.a.outputs['big'] | length }}",
         "steps.a.outputs.big was truncated (5,000 bytes; only a summary of the result is kept"
         " in the run's status)"),
    ],
    ids=["absent key", "not run yet", "truncated, store unreadable", "truncated, real Jinja"],
)
def test_reading_a_truncated_or_absent_key_names_step_key_and_why(
    status: StepStatus, note: str | None, template: str, message: str
) -> None:
    entry = step_entry(status, "a", None, note)
    with pytest.raises(Exception) as err:
        render_string(template, {**_ctx(a=entry)})
    assert str(err.value) == message
    # The worker gets the context as JSON and must say the same.
    plain = json.loads(json.dumps(_ctx(a=entry)))
    with pytest.raises(TemplateError) as werr:
        render_tree({"message": template}, plain, "log")
    assert str(werr.value) == f"log.message: {message}"


def test_is_defined_and_in_still_work_on_outputs() -> None:
    entry = step_entry(StepStatus(phase="Succeeded", outputs={"x": 1}), "a")
    text = ("{{ steps.a.outputs.y is defined }} {{ 'x' in steps.a.outputs }}"
            " {{ steps.a.outputs.get('y', 7) }}")
    assert render_string(text, _ctx(a=entry)) == "False True 7"


# --- the flow through plan(): store, reference, load back ------------------------------

BIG = {"small": "ok", "big": "x" * 900_000}


def _run_until(f: RunFacts, outcome: dict[str, dict[str, Any]],
               store: dict[str, bytes]) -> tuple[list[Plan], RunFacts]:
    """A tiny adapter: Jobs succeed with `outcome`, big results travel as the log does and
    StoreResult/loading go through `store`."""
    plans: list[Plan] = []
    jobs: dict[str, ObservedJob] = {}
    for _ in range(20):
        spec = f.status.workflow_spec if f.status else None
        if spec is not None:
            for j, ref in log_wanted(f):
                data = compact(outcome[j.step])
                jobs[j.name] = with_log(j, data if log_ref(data) == ref else None, "bad")
            f = replace(f, jobs=tuple(jobs.values()))
            wanted = wanted_results(f, build_cached(spec))
            f = replace(f, results={
                n: LoadedResult(r.sha256, outputs=json.loads(store[r.config_map]))
                for n, r in wanted.items()})
        p = plan(f)
        plans.append(p)
        for a in p.actions:
            if isinstance(a, StoreResult):
                store[a.config_map] = a.data
        for c in creates(p):
            data = compact(outcome.get(c.step, {}))
            message = (json.dumps({"ok": True, "outputs": summarize(outcome[c.step], 3000),
                                   "resultLog": log_ref(data)})
                       if len(data) > 3000 else result_json(True, outcome.get(c.step, {})))
            jobs[c.job_name] = job(c.step, c.attempt, "Succeeded", message=message)
        f = replace(f, status=p.status, jobs=tuple(jobs.values()))
        if p.status.phase in ("Succeeded", "Failed"):
            break
    return plans, f


@pytest.mark.parametrize("size", [3_000, 100_000, 900_000])
def test_big_results_reach_later_steps_whole_and_status_keeps_a_summary(size: int) -> None:
    outcome = {"a": {"small": "ok", "big": "x" * size}}
    spec = workflow(
        step("a"),
        step("b", "a", message="{{ steps.a.outputs.small }}:{{ steps.a.outputs.big | length }}"),
        step("c", "b", message="{{ steps.a.outputs.big[-3:] }}",
             when=f"size(steps.a.outputs.big) == {size}"),
    )
    store: dict[str, bytes] = {}
    plans, final = _run_until(facts(spec), outcome, store)
    assert final.status is not None and final.status.phase == "Succeeded"
    configs = {c.step: c.config for p in plans for c in creates(p)}
    assert configs["b"]["message"] == f"ok:{size}"
    assert configs["c"]["message"] == "xxx"
    st = (final.status.steps or {})["a"]
    assert st.outputs == {"small": "ok", "_truncated": {"big": size + 2}}
    assert st.result is not None and json.loads(store[st.result.config_map]) == outcome["a"]


def test_a_result_that_fits_status_is_kept_there_and_not_stored() -> None:
    store: dict[str, bytes] = {}
    _, final = _run_until(facts(workflow(step("a"))), {"a": {"n": 1}}, store)
    assert final.status is not None
    assert (final.status.steps or {})["a"].outputs == {"n": 1} and not store


def test_a_result_whose_log_is_gone_fails_the_attempt_saying_why() -> None:
    spec = workflow(step("a"))
    first = plan(facts(spec))
    data = compact(BIG)
    message = json.dumps({"ok": True, "outputs": {}, "resultLog": log_ref(data)})
    done = job("a", 1, "Succeeded", message=message)
    f = facts(spec, first.status, [done])
    assert [j.name for j, _ in log_wanted(f)] == [done.name]
    lost = with_log(done, None, "its pod is gone")
    p = plan(replace(f, jobs=(lost,)))
    st = (p.status.steps or {})["a"]
    assert st.phase == "Failed" and st.failure == "PodFailure"
    assert "could not be read from its pod log: its pod is gone" in (st.message or "")


def test_a_1000_step_run_with_big_results_stays_under_512_kib() -> None:
    names = [f"step-{i:04d}" for i in range(1000)]
    spec = workflow(*(step(n) for n in names))
    outcome = {n: {"id": i, "blob": "x" * 5000} for i, n in enumerate(names)}
    store: dict[str, bytes] = {}
    f = facts(spec)
    for _ in range(30):
        p = plan(f)
        for a in p.actions:
            if isinstance(a, StoreResult):
                store[a.config_map] = a.data
        jobs = {j.name: j for j in f.jobs}
        for c in creates(p):
            jobs[c.job_name] = ok(c.step, c.attempt, outcome[c.step])
        f = replace(f, status=p.status, jobs=tuple(jobs.values()))
        if p.status.phase == "Succeeded":
            break
    assert f.status is not None and f.status.phase == "Succeeded"
    assert len(store) == 1000
    run = {"apiVersion": "taskforge.io/v1alpha1", "kind": "WorkflowRun",
           "metadata": {"name": "run1", "namespace": "ns"},
           "spec": {"workflowRef": {"name": "wf"}}, "status": f.status.to_k8s()}
    assert _size(run) < 512 * 1024
    st = (f.status.steps or {})["step-0999"]
    assert st.outputs is not None and st.outputs["id"] == 999


def test_a_when_reading_a_truncated_key_says_it_was_truncated() -> None:
    spec = workflow(step("a"), step("b", "a", when="size(steps.a.outputs.big) > 0"))
    outputs = {"small": "ok", "big": "x" * 5000}
    first = plan(facts(spec))
    done = plan(facts(spec, first.status, [ok("a", 1, outputs)]))
    # The next plan could not load the stored result: `when` sees only the summary.
    st = (done.status.steps or {})["a"]
    assert st.result is not None
    lost = {"a": LoadedResult(st.result.sha256, error="configmap ns/x not found")}
    steps = {**(done.status.steps or {}), "b": StepStatus(phase="Pending")}
    status = done.status.model_copy(update={"steps": steps})
    f = replace(facts(spec, status, [ok("a", 1, outputs)]), results=lost)
    b = (plan(f).status.steps or {})["b"]
    assert b.phase == "Failed"
    assert b.message == (
        "when: 'size(steps.a.outputs.big) > 0': no such key 'big' (steps.a.outputs.big was"
        " truncated (5,002 bytes; only a summary of the result is kept in the run's status;"
        " the whole result could not be loaded: configmap ns/x not found))")
