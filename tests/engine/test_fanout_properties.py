"""Properties of forEach fan-out over random item counts, limits, endings and lost writes.

Whatever Hypothesis draws (how each item's attempts end, which Jobs finish when, which status
writes are lost by a crash between creating Jobs and patching status, a cancel):

* never more than maxParallel of a step's item Jobs are active at once;
* an item's attempt k+1 is launched only after its attempt k failed, and each
  (item, attempt) always has one Job name;
* replanning a plan's own status, with the Jobs it created, launches no item again;
* the same facts give the same plan;
* the run ends, and the step's counts add up to its items.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from enginekit import Cluster, facts, fail, job, ok, retry
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from taskforge.api.run import TERMINAL_RUN_PHASES
from taskforge.api.steps import ForEach, LogStep, Step
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.actions import CreateJob
from taskforge.engine.facts import ObservedJob
from taskforge.engine.planner import plan

ENDINGS = ["ok", "ok", "retryable", "permanent", "pod"]


@st.composite
def fanouts(draw: st.DrawFn) -> WorkflowSpec:
    n = draw(st.integers(0, 12))
    steps = [Step(name="pre", log=LogStep(message="pre"))]
    steps.append(Step(
        name="f", depends_on=["pre"], for_each=ForEach(items=list(range(n)),
                                                       max_parallel=draw(st.integers(1, 4))),
        retry=retry(draw(st.integers(0, 2)), delay=draw(st.sampled_from(["0s", "2s"]))),
        continue_on_failure=draw(st.booleans()),
        log=LogStep(message="{{ index }}={{ item }}"),
    ))
    steps.append(Step(name="after", depends_on=["f"], log=LogStep(message="after")))
    return WorkflowSpec(steps=steps)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # shrinking these runs is slow
@given(spec=fanouts(), data=st.data())
def test_fanout_is_bounded_and_never_launches_twice(spec: WorkflowSpec,
                                                    data: st.DataObject) -> None:
    fe = spec.steps[1].for_each
    assert fe is not None
    n, parallel = len(fe.items), fe.max_parallel
    endings = data.draw(st.dictionaries(st.tuples(st.integers(0, max(n - 1, 0)),
                                                  st.integers(1, 3)),
                                        st.sampled_from(ENDINGS)))
    cancel_at = data.draw(st.sampled_from([None, None, 3, 8]))

    def item_outcome(s: str, index: int, attempt: int) -> ObservedJob:
        kind = endings.get((index, attempt), "ok")
        if kind == "ok":
            return ok(s, attempt, {"i": index})
        if kind == "pod":
            return job(s, attempt, "Failed", failure="PodFailure")
        return fail(s, attempt, 75 if kind == "retryable" else 78)

    cluster = Cluster(facts(spec), item_outcome=item_outcome)
    names: dict[tuple[int, int], str] = {}
    for round_ in range(400):
        if cancel_at is not None and round_ == cancel_at:
            cluster.base = replace(cluster.base,
                                   spec=cluster.base.spec.model_copy(update={"cancel": True}))
        before = cluster.facts()
        lost = round_ < 60 and data.draw(st.booleans()) and data.draw(st.booleans())
        p = cluster.reconcile(keep_status=not lost)
        assert plan(before) == p  # the same facts, the same plan
        known = {(j.item, j.attempt): j for j in before.jobs if j.step == "f"}
        for a in p.actions:
            if not isinstance(a, CreateJob) or a.item is None:
                continue
            assert names.setdefault((a.item, a.attempt), a.job_name) == a.job_name
            if a.attempt > 1:  # only after the previous attempt failed
                prev = known.get((a.item, a.attempt - 1))
                assert prev is not None and prev.state == "Failed", (a.item, a.attempt)
        active = [j for j in cluster.jobs.values() if j.step == "f" and j.state == "Active"]
        assert len(active) <= parallel
        if not lost:
            # Replanning the plan's own status with its Jobs launches nothing again.
            again = plan(cluster.facts())
            launched = {(a.item, a.attempt) for a in p.actions
                        if isinstance(a, CreateJob) and a.item is not None}
            assert not [a for a in again.actions if isinstance(a, CreateJob) and a.is_new
                        and (a.item, a.attempt) in launched]
        if p.status.phase in TERMINAL_RUN_PHASES and not lost:
            break
        # Jobs end in random rounds (after round 60 in every one, so the run ends).
        if (round_ >= 60 or data.draw(st.booleans())) and cluster.finish():
            continue
        cluster.now += timedelta(seconds=p.requeue_after or 1)
    else:
        raise AssertionError("the run did not finish")
    f = (cluster.status.steps or {}).get("f") if cluster.status else None
    if f is not None and f.items is not None:
        i = f.items
        assert i.total == n == len(i.phases)
        assert i.succeeded + i.failed + i.cancelled + i.running + i.retrying + i.pending == n
        assert i.running == i.retrying == i.pending == 0
