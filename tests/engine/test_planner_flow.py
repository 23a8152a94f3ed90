"""Whole runs driven to the end by the pure cluster: shapes, failures, skips, finally.

Each row is a workflow, how every attempt ends, and what the run must end as.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from enginekit import (
    Cluster,
    Outcome,
    creates,
    facts,
    fail,
    job,
    ok,
    phases,
    retry,
    step,
    workflow,
)
from taskforge.api.run import TriggerInfo
from taskforge.api.workflow import ParamSpec, WorkflowSpec
from taskforge.engine.facts import ObservedJob


def failing(*names: str, code: int = 75, upto: int = 99) -> Outcome:
    """Attempts 1..upto of the named steps fail with `code`; everything else succeeds."""

    def outcome(s: str, attempt: int) -> ObservedJob:
        if s in names and attempt <= upto:
            return fail(s, attempt, code)
        return ok(s, attempt, {"step": s, "attempt": attempt})

    return outcome


def ending(kind: str, *names: str) -> Outcome:
    def outcome(s: str, attempt: int) -> ObservedJob:
        if s in names:
            return job(s, attempt, "Failed", failure=kind, message="OOMKilled")  # type: ignore[arg-type]
        return ok(s, attempt)

    return outcome


@dataclass(frozen=True)
class Case:
    id: str
    spec: WorkflowSpec
    outcome: Outcome
    phase: str
    steps: dict[str, str]
    reason: str = ""
    attempts: dict[str, int] = field(default_factory=dict)
    params: dict[str, object] | None = None


def chain(n: int) -> list:  # type: ignore[type-arg]
    return [step("s0")] + [step(f"s{i}", f"s{i - 1}") for i in range(1, n)]


GO = ParamSpec(name="go", type="boolean")
DIAMOND = [step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")]
FAN = [step("root"), *[step(f"w{i}", "root") for i in range(5)],
       step("join", *[f"w{i}" for i in range(5)])]

CASES = [
    Case("chain", workflow(*chain(4)), ok, "Succeeded",
         {"s0": "Succeeded", "s1": "Succeeded", "s2": "Succeeded", "s3": "Succeeded"}),
    Case("diamond", workflow(*DIAMOND), ok, "Succeeded", dict.fromkeys("abcd", "Succeeded")),
    Case("fan-out fan-in", workflow(*FAN), ok, "Succeeded",
         {"root": "Succeeded", "join": "Succeeded", "w3": "Succeeded"}),
    Case("independent roots", workflow(step("x"), step("y"), step("z")), ok, "Succeeded",
         dict.fromkeys("xyz", "Succeeded")),
    Case("diamond branch fails", workflow(*DIAMOND), failing("b"), "Failed",
         {"a": "Succeeded", "b": "Failed", "c": "Succeeded", "d": "Skipped"}, "Failed"),
    Case("root fails, all skipped", workflow(*FAN), failing("root"), "Failed",
         {"root": "Failed", "w0": "Skipped", "join": "Skipped"}, "Failed"),
    Case("fan-out worker fails, siblings finish", workflow(*FAN), failing("w2"), "Failed",
         {"w1": "Succeeded", "w2": "Failed", "w4": "Succeeded", "join": "Skipped"}, "Failed"),
    Case("failure stops unrelated branch", workflow(step("a"), step("x"), step("y", "x")),
         failing("a"), "Failed", {"a": "Failed", "x": "Succeeded", "y": "Skipped"}, "Failed"),
    Case("continue on failure", workflow(step("a"), step("b", "a", continue_on_failure=True),
                                         step("c", "b")),
         failing("b"), "Succeeded", {"a": "Succeeded", "b": "Failed", "c": "Succeeded"}),
    Case("exhausted retries", workflow(step("a", retry=retry(2, delay="1s"))), failing("a"),
         "Failed", {"a": "Failed"}, "Failed", {"a": 3}),
    Case("retry then success", workflow(step("a", retry=retry(3))), failing("a", upto=2),
         "Succeeded", {"a": "Succeeded"}, attempts={"a": 3}),
    Case("workflow default retry", workflow(step("a"), retry=retry(1)), failing("a", upto=1),
         "Succeeded", {"a": "Succeeded"}, attempts={"a": 2}),
    Case("step retry overrides default", workflow(step("a", retry=retry(0)), retry=retry(5)),
         failing("a", upto=1), "Failed", {"a": "Failed"}, "Failed", {"a": 1}),
    Case("permanent failure not retried", workflow(step("a", retry=retry(3))),
         failing("a", code=78), "Failed", {"a": "Failed"}, "Failed", {"a": 1}),
    Case("timeout not in retry.on", workflow(step("a", retry=retry(3, on=["Failed"]))),
         ending("TimedOut", "a"), "Failed", {"a": "Failed"}, "Failed", {"a": 1}),
    Case("pod failure retried", workflow(step("a", retry=retry(2, delay="0s"))),
         ending("PodFailure", "a"), "Failed", {"a": "Failed"}, "Failed", {"a": 3}),
    Case("when false skips and propagates",
         workflow(step("a"), step("b", "a", when="params.go"), step("c", "b"), step("d", "a"),
                  params=[GO]),
         ok, "Succeeded", {"b": "Skipped", "c": "Skipped", "d": "Succeeded"},
         params={"go": False}),
    Case("when true runs", workflow(step("a"), step("b", "a", when="params.go"), params=[GO]), ok,
         "Succeeded", {"b": "Succeeded"}, params={"go": True}),
    Case("when on outputs",
         workflow(step("a"), step("b", "a", when="steps.a.outputs.attempt == 1"),
                  step("c", "a", when="steps.a.outputs.attempt > 1")),
         failing(), "Succeeded", {"b": "Succeeded", "c": "Skipped"}),
    Case("when error fails step", workflow(step("a", when="params.nope")), ok, "Failed",
         {"a": "Failed"}, "Failed", params={}),
    Case("when non-bool fails step", workflow(step("a", when="'yes'")), ok, "Failed",
         {"a": "Failed"}, "Failed"),
    Case("template error fails step",
         workflow(step("a"), step("b", "a", message="{{ steps.a.outputs.nope }}")),
         ok, "Failed", {"a": "Succeeded", "b": "Failed"}, "Failed", {"b": 0}),
    Case("finally after success", workflow(step("a"), final=[step("f"), step("g", "f")]), ok,
         "Succeeded", {"a": "Succeeded", "f": "Succeeded", "g": "Succeeded"}),
    Case("finally after failure", workflow(step("a"), step("b", "a"), final=[step("f", "a")]),
         failing("a"), "Failed", {"a": "Failed", "b": "Skipped", "f": "Succeeded"}, "Failed"),
    Case("finally failure fails run", workflow(step("a"), final=[step("f"), step("g", "f")]),
         failing("f"), "Failed", {"a": "Succeeded", "f": "Failed", "g": "Skipped"}, "Failed"),
    Case("finally continue on failure", workflow(step("a"), final=[
         step("f", continue_on_failure=True), step("g", "f")]),
         failing("f"), "Succeeded", {"f": "Failed", "g": "Succeeded"}),
    Case("finally retries", workflow(step("a"), final=[step("f", retry=retry(1, delay="0s"))]),
         failing("f", upto=1), "Succeeded", {"f": "Succeeded"}, attempts={"f": 2}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_run_to_the_end(case: Case) -> None:
    cluster = Cluster(facts(case.spec, params=case.params), outcome=case.outcome)
    final = cluster.run()
    assert final.status.phase == case.phase
    got = phases(final)
    assert {k: got[k] for k in case.steps} == case.steps
    assert all(v in ("Succeeded", "Failed", "Skipped", "Cancelled") for v in got.values())
    if case.reason:
        c = next(c for c in final.status.conditions or () if c.type == "Succeeded")
        assert (c.status, c.reason) == ("False", case.reason)
    for name, n in case.attempts.items():
        assert final.status.steps is not None and final.status.steps[name].attempts == n
    assert final.status.progress == f"{len(got)}/{len(got)}"
    # Terminal: planning again changes nothing and does nothing.
    again = cluster.reconcile()
    assert again.actions == () and again.status is final.status


def test_skip_messages_name_the_dependency() -> None:
    spec = workflow(step("a", when="false"), step("b", "a"), step("c", "b"))
    final = Cluster(facts(spec)).run()
    steps = final.status.steps or {}
    assert steps["a"].message == "when 'false' is false"
    assert steps["b"].message == "dependency 'a' was Skipped"
    assert steps["c"].message == "dependency 'b' was Skipped"


def test_failed_dependency_message_and_dead_letter() -> None:
    spec = workflow(step("a", retry=retry(1, delay="1s")), step("b", "a"), final=[step("f")])
    final = Cluster(facts(spec), outcome=failing("a")).run()
    steps = final.status.steps or {}
    assert steps["b"].phase == "Skipped" and steps["b"].message == "dependency 'a' failed"
    assert steps["a"].message == (
        "attempt 2 failed: boom a#2; retries exhausted after 2 attempts")
    letter = final.status.dead_letter
    assert letter is not None
    assert (letter.id, letter.step, letter.workflow, letter.attempts, letter.shipped) == (
        "uid-1/a", "a", "wf", 2, False)
    assert letter.error == steps["a"].message
    assert final.status.message == f"step 'a' failed: {steps['a'].message}"


def test_template_error_creates_no_job_and_names_the_field() -> None:
    spec = workflow(step("a"), step("post", "a", message="{{ steps.a.outputs.nope }}"))
    cluster = Cluster(facts(spec))
    final = cluster.run()
    assert all(c.step != "post" for p in cluster.plans for c in creates(p))
    assert (final.status.steps or {})["post"].message == (
        "step 'post': log.message: steps.a.outputs.nope is absent: step 'a' (Succeeded)"
        " reported no outputs")


def test_when_error_message_names_the_expression() -> None:
    final = Cluster(facts(workflow(step("a", when="params.nope")))).run()
    message = (final.status.steps or {})["a"].message or ""
    assert message.startswith("when: 'params.nope': no such key")


def test_outputs_flow_to_dependents_and_big_ones_are_summarized_per_key() -> None:
    big = {"blob": "x" * 5000, "small": 1}
    spec = workflow(step("a"), step("b", "a", message="{{ steps.a.outputs.n }}"),
                    step("c", "b", message="{{ steps.b.outputs.small }}"))

    def outcome(s: str, attempt: int) -> ObservedJob:
        return ok(s, attempt, {"n": 7} if s == "a" else big)

    cluster = Cluster(facts(spec), outcome=outcome)
    final = cluster.run()
    configs = {c.step: c.config for p in cluster.plans for c in creates(p)}
    assert configs["b"]["message"] == "7" and configs["c"]["message"] == "1"
    st = (final.status.steps or {})["b"]
    assert st.outputs == {"small": 1, "_truncated": {"blob": 5002}}
    assert st.result is not None and st.result.size == len('{"blob":"","small":1}') + 5000


def test_trigger_and_run_data_reach_templates() -> None:
    spec = workflow(step("a", message="{{ run.name }}/{{ run.namespace }}/{{ run.workflow }}"
                         " {{ trigger.type }}:{{ trigger.body.ref }}:{{ trigger.deliveryId }}"))
    trig = TriggerInfo(type="webhook", body={"ref": "main"}, delivery_id="d-9")
    cluster = Cluster(facts(spec, trigger=trig))
    cluster.run()
    [create] = creates(cluster.plans[0])
    assert create.config["message"] == "run1/ns/wf webhook:main:d-9"


def test_step_timeout_becomes_the_job_deadline() -> None:
    spec = workflow(step("a", timeout="90s"), step("b", timeout="1.5s"), step("c"),
                    step_timeout="5m")
    cluster = Cluster(facts(spec))
    cluster.run()
    got = {c.step: c.timeout_seconds for c in creates(cluster.plans[0])}
    assert got == {"a": 90, "b": 2, "c": 300}
    cluster = Cluster(facts(workflow(step("a"))))
    cluster.run()
    assert creates(cluster.plans[0])[0].timeout_seconds is None


def test_timed_out_attempt_message() -> None:
    spec = workflow(step("a", timeout="30s"))
    final = Cluster(facts(spec), outcome=ending("TimedOut", "a")).run()
    a = (final.status.steps or {})["a"]
    assert (a.failure, a.message) == (
        "TimedOut", "attempt 1 failed: timed out after 30s; no retries configured")


def test_pod_failure_message_keeps_the_reason() -> None:
    final = Cluster(facts(workflow(step("a"))), outcome=ending("PodFailure", "a")).run()
    a = (final.status.steps or {})["a"]
    assert a.failure == "PodFailure"
    assert a.message == "attempt 1 failed: pod failure: OOMKilled; no retries configured"


