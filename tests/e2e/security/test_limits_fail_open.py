"""A limit skipped because Redis is down is never silent (issue 11, defect 6).

Before: with Redis unreachable, the `open` policy started runs without their limits while
the Workflow kept saying `LimitsEnforced=True` and nothing on the run said so. Now the
Workflow's condition turns False (`RedisUnavailable`) and back to True when Redis returns, the
run gets a `LimitNotApplied` Event, and `taskforge_limits_skipped_total{kind}` counts it.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.operator.conftest import Kube, OperatorProcess
from tests.e2e.security.limits_kit import (
    NO_JOB_STEP,
    assert_healthy,
    eventually,
    metric,
    started,
    workflow_condition,
)

SKIPPED = "taskforge_limits_skipped_total"


def test_skipped_limits_are_visible_while_redis_is_down(
    kube: Kube, running_operator: OperatorProcess, redis_server: Any
) -> None:
    op = running_operator
    kube.workflow("visible", {"rateLimit": {"limit": 1, "per": "1h"}, "steps": [NO_JOB_STEP]})
    eventually(lambda: workflow_condition(kube, "visible", "LimitsEnforced").get("status")
               == "True", 30, "LimitsEnforced=True while Redis is up")
    first = kube.start_run("visible")
    eventually(lambda: started(kube.run(first)), 30, "the first run takes the hour's token")
    before = metric(op, SKIPPED, {"kind": "run_rate"})

    redis_server.stop()  # the session's Redis; started again below, empty
    try:
        second = kube.start_run("visible")  # no token left, but nobody can say so now
        eventually(lambda: started(kube.run(second)), 30, "the open policy starts the run")
        down = eventually(lambda: (c := workflow_condition(kube, "visible", "LimitsEnforced"))
                          .get("status") == "False" and c, 30, "LimitsEnforced turns False")
        assert down["reason"] == "RedisUnavailable", down
        assert "not applied" in down["message"] and "open" in down["message"], down
        events = eventually(lambda: [e for e in kube.events(second)
                                     if e.reason == "LimitNotApplied"], 15,
                            "a LimitNotApplied Event on the run")
        assert events[0].type == "Warning"
        assert "rate limit 1 per 1h" in events[0].message, events[0].message
        assert metric(op, SKIPPED, {"kind": "run_rate"}) >= before + 1
        assert_healthy(op)
    finally:
        redis_server.start()

    up = eventually(lambda: (c := workflow_condition(kube, "visible", "LimitsEnforced"))
                    .get("status") == "True" and c, 30, "LimitsEnforced back to True")
    assert up["reason"] == "RedisConfigured", up
    assert [e for e in kube.events(first) if e.reason == "LimitNotApplied"] == [], \
        "a run that got its token is not reported"
    assert_healthy(op)
