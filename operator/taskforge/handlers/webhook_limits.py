"""The webhook's side of a workflow's run-level rate limit: spend at delivery, reserve, refund.

A delivery spends the token when it arrives, so a sender over the limit hears 429 at once
instead of its run waiting Pending. The run it creates carries a reservation (see
adapters/reservations.py) that the operator claims instead of charging again; a run that is
not created, or already existed (a redelivery), gives its token back.
"""

from __future__ import annotations

import logging

from taskforge.adapters import metrics
from taskforge.adapters.redis_client import RedisCallError
from taskforge.api.durations import parse_duration
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.limits import run_rate_key
from taskforge.engine.webhook import DeliveryAdmission
from taskforge.handlers.limits import RESERVATION_TTL, Limits

log = logging.getLogger("taskforge.limits")


async def webhook_admit(
    limits: Limits, namespace: str, workflow: str, run: str, spec: WorkflowSpec
) -> DeliveryAdmission:
    """Spend one of the workflow's run-start tokens for the delivery whose run will be named
    `run`, and reserve it for that run. Busy is a refusal (503), never a yes."""
    if limits.limiter is None or limits.reservations is None or spec.rate_limit is None:
        return DeliveryAdmission()
    got = await limits.limiter.acquire(
        run_rate_key(namespace, workflow),
        spec.rate_limit.limit,
        parse_duration(spec.rate_limit.per),
    )
    if got.busy:
        return DeliveryAdmission(retry_after=got.retry_after, busy=True)
    if not got.allowed:
        return DeliveryAdmission(retry_after=max(got.retry_after, 0.001))
    if got.degraded:  # no proof: the operator checks the run again, and reports the skip
        metrics.LIMITS_SKIPPED.labels("webhook_rate").inc()
        return DeliveryAdmission()
    try:
        proof = await limits.reservations.reserve(namespace, workflow, run, RESERVATION_TTL)
    except RedisCallError as exc:  # the run pays again: never fewer checks than runs
        log.warning("webhook %s/%s: no reservation for %s: %s", namespace, workflow, run, exc)
        return DeliveryAdmission()
    return DeliveryAdmission(reservation=proof)


async def webhook_release(
    limits: Limits, namespace: str, workflow: str, run: str, reservation: str, *,
    spec: WorkflowSpec,
) -> None:
    """The delivery's run was not created, or existed already: cancel its reservation and
    give the token back, so a redelivery costs nothing. Best effort: a lost refund only
    costs capacity."""
    if limits.limiter is None or limits.reservations is None or spec.rate_limit is None:
        return
    try:
        if await limits.reservations.cancel(namespace, workflow, run, reservation):
            await limits.limiter.refund(run_rate_key(namespace, workflow),
                                        spec.rate_limit.limit,
                                        parse_duration(spec.rate_limit.per))
    except RedisCallError as exc:
        log.warning("webhook %s/%s: reservation of %s not given back (%s); it lapses",
                    namespace, workflow, run, exc)
