"""Caps on what templates may produce and how much work they may do (engine.sandbox).

Every hostile template fails its own step with TemplateLimitError naming the step and the
field, quickly and without allocating what it asked for; the run then ends with reason
TemplateLimit and is never retried. The in-process renderer has the same caps as the worker
processes the operator uses (which add a time and a memory limit: tests/unit/).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from taskforge.api.steps import LogStep, ScriptStep, Step
from taskforge.api.workflow import ParamSpec
from taskforge.engine.planner import plan
from taskforge.engine.sandbox import (
    MAX_CONFIG_BYTES,
    MAX_FIELD_BYTES,
    MAX_ITEMS,
    MAX_WORK,
    TemplateError,
    TemplateLimitError,
)
from taskforge.engine.templating import (
    NeedsWorker,
    defer_to_worker,
    plain_context,
    render_step_config,
)

from tests.engine.enginekit import (
    Cluster,
    cond,
    creates,
    facts,
    ok,
    retry,
    step,
    workflow,
)

KIB = "k" * 1024
CTX: dict[str, Any] = {
    "params": {"kib": KIB, "n": 3, "big": "b" * 100_000},
    "steps": {"a": {"phase": "Succeeded", "outputs": {"id": 1}, "exitCode": 0, "attempts": 1}},
    "run": {"name": "r", "namespace": "ns", "uid": "u", "workflow": "wf"},
    "trigger": {"type": "manual", "body": None, "scheduledTime": None, "deliveryId": None},
}
FIELD = f"rendered output exceeds {MAX_FIELD_BYTES} bytes"


def log(message: str) -> Step:
    return Step(name="s", log=LogStep(message=message))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'x' * 30000000 }}", "string multiplication would produce 30000000 characters"),
        ("{{ 30000000 * 'x' }}", "string multiplication would produce 30000000 characters"),
        ("{{ [0] * 10**7 }}",
         f"list multiplication would produce 10000000 items (limit {MAX_ITEMS})"),
        ("{{ params.big + params.big + params.big }}", "string concatenation would produce"),
        ("{{ range(10**6) | list }}", "range() would produce 1000000 items"),
        ("{% for i in range(19000) %}{% for j in range(19000) %}{% endfor %}{% endfor %}",
         f"more than {MAX_WORK} units of work"),
        ("{% for c in params.big %}{% for d in params.big %}{% endfor %}{% endfor %}",
         f"more than {MAX_WORK} units of work"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "recursion too deep"),
        ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(30) }}",
         f"more than {MAX_WORK} units of work"),
        ("{{ 'x' | center(10**9) }}", "center would produce 1000000000 characters"),
        ("{{ 'x'.ljust(10**9) }}", "str.ljust would produce 1000000000 characters"),
        ("{{ 'x'.zfill(10**9) }}", "str.zfill would produce"),
        ("{{ ('\t' * 1000).expandtabs(10**6) }}", "str.expandtabs would produce"),
        ("{{ params.big | replace('b', params.kib) }}", "replace would produce"),
        ("{{ params.big.replace('b', 'bbbbbb') }}", "replace would produce"),
        ("{{ ('a\n' * 1000) | indent(params.kib) }}", "indent would produce"),
        ("{{ ('a ' * 100000) | wordwrap(1, wrapstring=params.kib) }}", "wordwrap would produce"),
        ("{{ range(100000) | join(params.kib) }}", "join would produce"),
        ("{{ params.kib.join(range(100000) | map('string') | list) }}", "str.join would produce"),
        ("{{ '%999999999d' | format(1) }}", "a % format width would produce 999999999"),
        ("{{ '%*d' % (999999999, 1) }}", "a % format width would produce 999999999"),
        ("{{ '{:>999999999}'.format(1) }}", "a format width would produce 999999999"),
        ("{{ '{:>{}}'.format(1, 999999999) }}", "a format width would produce 999999999"),
        ("{{ [1] | batch(10**9, 0) | list }}", "batch would produce 1000000000 items"),
        ("{{ [1] | slice(10**9) | list }}", "slice would produce 1000000000 items"),
        ("{{ params | tojson(10**6) }}", "tojson indent 1000000 is over"),
        ("{{ 2 ** 100000000 }}", "2 ** 100000000 has more than"),
        ("{{ lipsum(10**6) }}", "lipsum would produce"),
        ("{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set _ = ns.l.extend(ns.l) %}"
         "{% endfor %}", "list.extend would produce"),
        ("{% for i in range(4096) %}{{ params.kib }}{% endfor %}", FIELD),
        ("{{ params.big }}{{ params.big }}{{ params.big }}", FIELD),  # the fast path
        ("{{ params.big ~ params.big ~ params.big }}", FIELD),
    ],
)
def test_hostile_templates_fail_fast_with_the_cap_named(source: str, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateLimitError) as err:
        render_step_config(log(source), CTX)
    assert str(err.value).startswith("step 's': log.message: "), str(err.value)
    assert message in str(err.value)
    assert time.perf_counter() - started < 5  # the work cap: about 0.5 s on a slow machine


def test_the_step_config_as_a_whole_is_capped() -> None:
    field = "{{ params.big }}{{ params.big }}"  # 200,000 bytes: under the field cap
    script = Step(name="s", script=ScriptStep(source=field, env=[
        {"name": "A", "value": field}, {"name": "B", "value": field}]))
    with pytest.raises(TemplateLimitError) as err:
        render_step_config(script, CTX)
    assert str(err.value).startswith("step 's': script: rendered config is ")
    assert f"over the limit of {MAX_CONFIG_BYTES}" in str(err.value)


@pytest.mark.parametrize(
    "source",
    [
        f"{{{{ 'x' * {MAX_FIELD_BYTES} }}}}",
        "{% for i in range(256) %}{{ params.kib }}{% endfor %}",
        "{{ params.big }}{{ params.big }}",
        "{% for i in range(100000) %}{% endfor %}{{ range(100000) | sum }}",
        "{{ params.kib | center(2000) | length }}",
    ],
)
def test_large_but_legal_templates_still_render(source: str) -> None:
    out = render_step_config(log(source), CTX)["message"]
    assert 0 < len(out) <= MAX_FIELD_BYTES


def test_output_cap_counts_utf8_bytes() -> None:
    with pytest.raises(TemplateLimitError, match="exceeds"):
        render_step_config(log(f"{{{{ 'é' * {MAX_FIELD_BYTES // 2 + 1} }}}}"), CTX)
    assert render_step_config(log(f"{{{{ 'é' * {MAX_FIELD_BYTES // 2} }}}}"), CTX)


def test_ordinary_errors_stay_template_errors() -> None:
    with pytest.raises(TemplateError) as err:
        render_step_config(log("{{ params.nope }}"), CTX)
    assert not isinstance(err.value, TemplateLimitError)


# -- in a plan: the step fails for good, the run says TemplateLimit, nothing is retried ----------


def test_a_run_over_a_cap_fails_with_reason_template_limit_and_is_never_retried() -> None:
    spec = workflow(step("a"), step("b", "a", message="{{ 'x' * 30000000 }}", retry=retry(5)),
                    step("c", "a"), retry=retry(5))
    cluster = Cluster(facts(spec))
    final = cluster.run()
    b = (final.status.steps or {})["b"]
    assert (b.phase, b.failure, b.attempts) == ("Failed", "TemplateLimit", 0)
    assert b.message == ("step 'b': log.message: string multiplication would produce 30000000"
                         f" characters (limit {MAX_FIELD_BYTES})")
    assert cond(final) == ("False", "TemplateLimit")
    assert final.status.phase == "Failed" and final.requeue_after is None
    assert all(c.step != "b" for p in cluster.plans for c in creates(p))
    again = plan(cluster.facts())  # a replan of the final status does nothing more
    assert again.actions == () and again.status == final.status


def test_an_ordinary_template_error_keeps_reason_failed() -> None:
    final = Cluster(facts(workflow(step("a", message="{{ run.nope }}")))).run()
    assert (final.status.steps or {})["a"].failure == "Failed"
    assert cond(final) == ("False", "Failed")


# -- the renderer is injected: plain lookups never leave the caller -----------------------------


def test_plain_lookups_render_without_the_renderer() -> None:
    spec = workflow(step("a", message="{{ run.name }} {{ params.x }}"),
                    params=[ParamSpec(name="x")])
    p = plan(facts(spec, params={"x": "y"}), render=defer_to_worker)
    assert [c.config["message"] for c in creates(p)] == ["run1 y"]


def test_real_jinja_goes_to_the_renderer_with_a_plain_context() -> None:
    spec = workflow(step("a"), step("b", "a", message="{{ steps.a.outputs.id | string }}"))
    cluster = Cluster(facts(spec))
    cluster.reconcile()
    cluster.jobs[cluster.names[("a", 1)]] = ok("a", 1, {"id": 7})
    with pytest.raises(NeedsWorker):
        plan(cluster.facts(), render=defer_to_worker)
    seen: list[dict[str, Any]] = []

    def renderer(config: dict[str, Any], context: dict[str, Any], root: str) -> dict[str, Any]:
        seen.append(context)
        return {"message": "rendered elsewhere", "level": "info"}

    p = plan(cluster.facts(), render=renderer)
    assert [c.config["message"] for c in creates(p)] == ["rendered elsewhere"]
    assert list(seen[0]["steps"]) == ["a"] and seen[0]["steps"]["a"]["outputs"] == {"id": 7}
    assert seen[0]["run"]["name"] == "run1"
    assert [c.config["message"] for c in creates(plan(cluster.facts()))] == ["7"]


@pytest.mark.parametrize(
    ("sources", "names"),
    [
        (["{{ steps.a.outputs | tojson }}", "{{ steps['b-c'].phase }}"], {"a", "b-c"}),
        (["{% for n in steps %}{{ n }}{% endfor %}"], {"a", "b-c", "d"}),
        (["{{ steps.items() | list }}"], {"a", "b-c", "d"}),
        (["{{ steps[params.which] }}"], {"a", "b-c", "d"}),
        (["no steps named {{ params.x | upper }}"], {"a", "b-c", "d"}),
        (["{{ params.x | upper }}"], set()),
    ],
)
def test_plain_context_sends_only_the_steps_named(sources: list[str], names: set[str]) -> None:
    steps = {n: {"phase": "Succeeded", "outputs": {}} for n in ("a", "b-c", "d")}
    context = {"params": {"x": 1}, "steps": steps}
    out = plain_context(context, {"message": sources[0], "more": sources[1:]})
    assert set(out["steps"]) == names
    assert out["params"] == {"x": 1}


def test_a_repeat_create_that_fails_to_render_never_fails_a_running_step() -> None:
    """The repeat CreateJob of an attempt whose Job is not in the cache yet renders again;
    a worker out of time on a busy node must not fail a step whose Job was created."""
    spec = workflow(step("a", message="{{ run.name | upper }}"))
    cluster = Cluster(facts(spec))
    cluster.reconcile()
    cluster.jobs.clear()  # created, not observed yet

    def out_of_time(config: dict[str, Any], context: dict[str, Any], root: str
                    ) -> dict[str, Any]:
        raise TemplateLimitError(f"{root}.message: rendering took longer than 2 s")

    p = plan(cluster.facts(), render=out_of_time)
    assert (st := (p.status.steps or {})["a"]).phase == "Running" and st.failure is None
    assert creates(p) == [] and p.requeue_after is not None and p.requeue_after > 0
