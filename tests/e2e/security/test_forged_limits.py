"""Rate limits cannot be forged (issue 11, defect 4).

The attack, as it worked before: a user who may create WorkflowRuns writes
`spec.trigger.type: webhook` into hand-made runs; the operator took webhook runs as already
checked by the webhook server, so three such runs against one start per minute all ran at
once. Now only a reservation the webhook server stored in Redis for exactly that run (namespace,
workflow, name; claimed once, by one uid) spares a run its token; everything a user can write
into a run is checked like any other run.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from taskforge.engine.webhook import webhook_run_name

from tests.e2e.operator.conftest import GROUP, VERSION, Kube, OperatorProcess
from tests.e2e.security.limits_kit import (
    NO_JOB_STEP,
    assert_healthy,
    deliver,
    eventually,
    reason,
    run_names,
    started,
    webhook_workflow,
)

# Per hour, not per minute: a token that comes back while a slow machine runs the test would
# let a run start legitimately and look like a bypass.
ONE_PER_HOUR = {"rateLimit": {"limit": 1, "per": "1h"}, "steps": [NO_JOB_STEP]}


def _hand_made(kube: Kube, name: str, workflow: str, trigger: dict[str, Any]) -> str:
    kube.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkflowRun",
                "metadata": {"name": name},
                "spec": {"workflowRef": {"name": workflow}, "trigger": trigger}})
    return name


def _waits_rate_limited(kube: Kube, names: list[str], seconds: float = 6.0) -> None:
    """Each run is Pending with reason RateLimited, and stays so (never started)."""
    def limited(name: str) -> bool:
        return reason(kube.run(name)) == "RateLimited"

    for name in names:
        eventually(partial(limited, name), 30, f"{name} waiting RateLimited")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for name in names:
            run = kube.run(name)
            assert not started(run), f"{name} started despite the limit: {run.get('status')}"
        time.sleep(0.5)


def test_forged_webhook_trigger_waits_like_any_run(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    kube.workflow("limited", ONE_PER_HOUR)
    first = kube.start_run("limited")
    eventually(lambda: started(kube.run(first)), 30, "the first run starts")
    forged = [
        _hand_made(kube, "forged-type", "limited", {"type": "webhook", "deliveryId": "x"}),
        _hand_made(kube, "forged-proof", "limited",
                   {"type": "webhook", "deliveryId": "y", "reservation": "A" * 24}),
        _hand_made(kube, "forged-junk", "limited",
                   {"type": "webhook", "reservation": "../../rsv:*"}),
    ]
    _waits_rate_limited(kube, forged)
    assert_healthy(running_operator)


def test_copied_and_squatted_proofs_buy_nothing(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    ns = kube.namespace
    webhook_workflow(kube, "hooked", {"rateLimit": {"limit": 2, "per": "1h"},
                                      "steps": [NO_JOB_STEP]})
    eventually(lambda: deliver(running_operator, ns, "hooked", "probe").status_code == 202, 30,
               "the operator's cache knows the workflow")
    genuine = webhook_run_name(ns, "hooked", "probe")
    run = eventually(lambda: (r := kube.run(genuine)) and started(r) and r, 30,
                     "the genuine run starts")
    trigger = run["spec"]["trigger"]
    assert trigger.get("reservation"), "a delivery's run carries its reservation"

    # A run squatting the name the next delivery will get, with that delivery's id: it exists
    # before the reservation is drawn, so it cannot carry it, and pays its own token.
    squat = _hand_made(kube, webhook_run_name(ns, "hooked", "next"), "hooked",
                       {"type": "webhook", "deliveryId": "next"})
    eventually(lambda: started(kube.run(squat)), 30, "the squatter starts, paying the 2nd token")
    answer = deliver(running_operator, ns, "hooked", "next")
    assert answer.status_code == 429, answer.text  # the bucket is empty: no free ride

    # The genuine run's proof copied into other runs (another name; the same name recreated
    # after the original is gone): both wait, the proof was bound to one run and is spent.
    copies = [_hand_made(kube, "copycat", "hooked", trigger)]
    kube.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "workflowruns", genuine)
    eventually(lambda: genuine not in run_names(kube), 30, "the genuine run is gone")
    copies.append(_hand_made(kube, genuine, "hooked", trigger))
    _waits_rate_limited(kube, copies)
    assert_healthy(running_operator)


def test_genuine_deliveries_are_charged_once(
    kube: Kube, running_operator: OperatorProcess
) -> None:
    ns = kube.namespace
    webhook_workflow(kube, "paid", {"rateLimit": {"limit": 2, "per": "1h"},
                                    "steps": [NO_JOB_STEP]})
    first = eventually(lambda: (r := deliver(running_operator, ns, "paid", "d-1"))
                       .status_code == 202 and r, 30, "the first delivery is accepted")
    again = deliver(running_operator, ns, "paid", "d-1")  # a redelivery: its token comes back
    assert again.status_code == 202 and again.json()["duplicate"] is True, again.text
    second = deliver(running_operator, ns, "paid", "d-2")
    assert second.status_code == 202, second.text
    third = deliver(running_operator, ns, "paid", "d-3")
    assert third.status_code == 429, third.text
    def started_run(name: str) -> dict[str, Any] | None:
        run = kube.run(name)
        return run if started(run) else None

    for response in (first, second):
        name = response.json()["run"]
        run = eventually(partial(started_run, name), 30,
                         f"{name} starts without paying a second token")
        assert reason(run) != "RateLimited"
    assert_healthy(running_operator)
