"""The cache says which watch events change what the engine sees (issue 14, item 3): a step's
Job and pod send about eight events, and only those that change `observe_job`'s answer, or
are not the echo of the operator's own status write, should cost a reconcile."""

from __future__ import annotations

from typing import Any

from taskforge.handlers.store import Store

RUN = ("ns", "r1")
JOB = "r1-a-1"
LABELS = {"taskforge.io/run": "r1", "taskforge.io/step": "a", "taskforge.io/attempt": "1"}


def job(status: dict[str, Any] | None = None, rv: str = "1") -> dict[str, Any]:
    return {"metadata": {"name": JOB, "namespace": "ns", "labels": LABELS, "resourceVersion": rv},
            "status": status or {}}


def pod(state: dict[str, Any] | None, rv: str = "1", **meta: Any) -> dict[str, Any]:
    statuses = [{"name": "step", "state": state}] if state is not None else []
    return {"metadata": {"name": f"{JOB}-x", "namespace": "ns", "resourceVersion": rv,
                         "labels": {**LABELS, "batch.kubernetes.io/job-name": JOB}, **meta},
            "status": {"phase": "Pending", "containerStatuses": statuses}}


TERMINATED = {"terminated": {"exitCode": 0, "reason": "Completed", "message": "{}",
                             "finishedAt": "2026-11-30T12:00:01Z"}}


def test_the_events_of_one_step_and_which_need_a_reconcile() -> None:
    store = Store()
    pod_key = ("ns", JOB)
    events = [
        ("job added", lambda: store.put_job(RUN, JOB, job()), True),
        ("pod created", lambda: store.put_pod(pod_key, "p", pod(None), RUN), False),
        ("pod bound", lambda: store.put_pod(pod_key, "p", pod(None, rv="2"), RUN), False),
        # an active Job's start time changes no plan (only adopt() reads it)
        ("job started", lambda: store.put_job(RUN, JOB, job(
            {"active": 1, "startTime": "2026-11-30T12:00:00Z"}, rv="2")), False),
        ("pod running", lambda: store.put_pod(pod_key, "p", pod(
            {"running": {"startedAt": "2026-11-30T12:00:00Z"}}, rv="3"), RUN), False),
        ("pod terminated", lambda: store.put_pod(pod_key, "p", pod(TERMINATED, rv="4"), RUN),
         True),
        ("finalizer removed", lambda: store.put_pod(pod_key, "p", pod(TERMINATED, rv="5"), RUN),
         False),
        ("job uncounted", lambda: store.put_job(RUN, JOB, job(
            {"active": 0, "startTime": "2026-11-30T12:00:00Z",
             "uncountedTerminatedPods": {"succeeded": ["u"]}}, rv="3")), False),
        ("job complete", lambda: store.put_job(RUN, JOB, job(
            {"succeeded": 1, "startTime": "2026-11-30T12:00:00Z",
             "completionTime": "2026-11-30T12:00:02Z",
             "conditions": [{"type": "Complete", "status": "True"}]}, rv="4")), False),
        # without its pod the Job's own status is all there is: finishedAt and message change
        ("pod deleted", lambda: store.put_pod(pod_key, "p", None, RUN), True),
        ("job deleted", lambda: store.put_job(RUN, JOB, None), True),
    ]
    seen = [(what, put()) for what, put, _ in events]
    assert seen == [(what, expected) for what, _, expected in events]


def test_a_pod_whose_job_is_not_cached_yet_always_reconciles() -> None:
    store = Store()
    assert store.put_pod(("ns", JOB), "p", pod(TERMINATED), RUN)
    assert store.put_pod(("ns", JOB), "p", pod(TERMINATED, rv="2"))  # no run given: always


def test_a_failing_pod_reconciles_once() -> None:
    store = Store()
    store.put_job(RUN, JOB, job())
    stuck = {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}
    assert store.put_pod(("ns", JOB), "p", pod(stuck), RUN)
    assert not store.put_pod(("ns", JOB), "p", pod(stuck, rv="2"), RUN)


def test_only_the_echo_of_our_own_write_is_skipped() -> None:
    store = Store()
    run = {"metadata": {"name": "r1", "resourceVersion": "10"}, "status": {}}
    store.put_run(RUN, run)
    assert not store.own_write(RUN, run)  # nothing written yet
    store.wrote_run(RUN, "10", {"metadata": {"name": "r1", "resourceVersion": "11"},
                                "status": {"phase": "Running"}})
    assert not store.own_write(RUN, run)  # the older body: not ours
    echo = {"metadata": {"name": "r1", "resourceVersion": "11"}, "status": {"phase": "Running"}}
    assert store.own_write(RUN, echo)
    later = {"metadata": {"name": "r1", "resourceVersion": "12"}, "spec": {"cancel": True}}
    assert not store.own_write(RUN, later)  # someone else's change after ours


def test_a_deleted_run_forgets_its_jobs_observations() -> None:
    store = Store()
    store.put_run(RUN, {"metadata": {"name": "r1", "resourceVersion": "1"}})
    store.put_job(RUN, JOB, job())
    store.put_run(RUN, None)
    assert store.put_job(RUN, JOB, job())  # seen afresh


def test_only_active_until_the_pod_ends() -> None:
    """What the Job watch's echo check reads (registration.on_job): a Job we just created is
    no news while all that is known is that it runs."""
    store = Store()
    assert not store.only_active("ns", JOB)  # never seen
    store.put_job(RUN, JOB, job())
    assert store.only_active("ns", JOB)
    store.put_pod(("ns", JOB), "p", pod(TERMINATED, rv="4"), RUN)
    assert not store.only_active("ns", JOB)
