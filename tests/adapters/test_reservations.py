"""Webhook token reservations and the run admission that honours them: a user-written
`spec.trigger` never skips a limit; only a reservation made for exactly this run does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from taskforge.adapters import metrics
from taskforge.adapters.ratelimit import RateLimiter
from taskforge.adapters.redis_client import RedisConnection, RedisSettings
from taskforge.adapters.reservations import Reservations
from taskforge.api.run import WorkflowRunStatus
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.actions import CreateJob, EmitEvent, Plan
from taskforge.engine.limits import Waiter
from taskforge.handlers.limits import Limits
from taskforge.handlers.webhook_limits import webhook_admit, webhook_release

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ONE_PER_MINUTE = WorkflowSpec.model_validate({"rateLimit": {"limit": 1, "per": "1m"},
                                              "steps": [{"name": "s", "log": {"message": "x"}}]})


async def test_claim_is_bound_to_run_and_uid(conn: RedisConnection) -> None:
    r = Reservations(conn)
    rid = await r.reserve("ns", "wf", "wf-wh-1", ttl=60)
    assert not await r.claim("ns", "wf", "other-run", rid, uid="u1", keep=60)  # copied
    assert not await r.claim("ns", "other", "wf-wh-1", rid, uid="u1", keep=60)  # other workflow
    assert not await r.claim("ns2", "wf", "wf-wh-1", rid, uid="u1", keep=60)  # other namespace
    assert not await r.claim("ns", "wf", "wf-wh-1", "made-up-but-well-formed", uid="u1", keep=60)
    assert not await r.claim("ns", "wf", "wf-wh-1", "x:*", uid="u1", keep=60)  # malformed
    assert await r.claim("ns", "wf", "wf-wh-1", rid, uid="u1", keep=60)
    assert await r.claim("ns", "wf", "wf-wh-1", rid, uid="u1", keep=60)  # same run: idempotent
    assert not await r.claim("ns", "wf", "wf-wh-1", rid, uid="u2", keep=60)  # recreated run
    assert not await r.cancel("ns", "wf", "wf-wh-1", rid)  # claimed: not cancellable


async def test_cancel_only_unclaimed(conn: RedisConnection) -> None:
    r = Reservations(conn)
    rid = await r.reserve("ns", "wf", "run", ttl=60)
    assert await r.cancel("ns", "wf", "run", rid)
    assert not await r.claim("ns", "wf", "run", rid, uid="u1", keep=60)


async def test_refund_gives_one_token_back(conn: RedisConnection) -> None:
    limiter = RateLimiter(conn)
    assert (await limiter.acquire("k", 2, 60.0)).allowed
    assert (await limiter.acquire("k", 2, 60.0)).allowed
    assert not (await limiter.acquire("k", 2, 60.0)).allowed
    await limiter.refund("k", 2, 60.0)
    assert (await limiter.acquire("k", 2, 60.0)).allowed
    assert not (await limiter.acquire("k", 2, 60.0)).allowed
    for _ in range(5):  # refunds never bank more than a full bucket
        await limiter.refund("k", 2, 60.0)
    got = [(await limiter.acquire("k", 2, 60.0)).allowed for _ in range(3)]
    assert got == [True, True, False]


async def _admit(limits: Limits, run: str, uid: str, reservation: str | None = None) -> bool:
    gate = await limits.admit_run(ONE_PER_MINUTE, namespace="ns", workflow="wf", uid=uid,
                                  me=Waiter(NOW, run), waiting=[], now=NOW,
                                  reservation=reservation)
    assert gate is not None
    return gate.admission.allowed


@pytest.fixture
async def limits(settings: RedisSettings) -> Limits:
    return Limits(settings)


async def test_forged_runs_pay_like_any_other(limits: Limits) -> None:
    assert await _admit(limits, "first", "u1")
    assert not await _admit(limits, "forged", "u2", reservation="A" * 24)
    assert not await _admit(limits, "forged2", "u3")


async def test_a_delivery_is_charged_once_and_its_proof_only_once(limits: Limits) -> None:
    admitted = await webhook_admit(limits, "ns", "wf", "wf-wh-1", ONE_PER_MINUTE)
    assert admitted.accepted and admitted.reservation
    assert await _admit(limits, "wf-wh-1", "uid-1", admitted.reservation)  # not charged again
    assert await _admit(limits, "wf-wh-1", "uid-1", admitted.reservation)  # a retried admission
    # The bucket (1 per minute) is empty: the proof copied elsewhere buys nothing.
    assert not await _admit(limits, "copy", "uid-2", admitted.reservation)
    assert not await _admit(limits, "wf-wh-1", "uid-3", admitted.reservation)  # recreated
    again = await webhook_admit(limits, "ns", "wf", "wf-wh-2", ONE_PER_MINUTE)
    assert again.retry_after is not None and not again.busy
    await limits.close()


async def test_a_redelivery_gets_its_token_back(limits: Limits) -> None:
    first = await webhook_admit(limits, "ns", "wf", "wf-wh-1", ONE_PER_MINUTE)
    assert first.reservation is not None
    await webhook_release(limits, "ns", "wf", "wf-wh-1", first.reservation, spec=ONE_PER_MINUTE)
    second = await webhook_admit(limits, "ns", "wf", "wf-wh-1", ONE_PER_MINUTE)
    assert second.accepted
    await limits.close()


async def test_skipped_limits_are_reported() -> None:
    limits = Limits(RedisSettings(url="redis://127.0.0.1:1/0", prefix=f"x{uuid.uuid4().hex}:"))
    before = metrics.LIMITS_SKIPPED.labels("run_rate")._value.get()
    gate = await limits.admit_run(ONE_PER_MINUTE, namespace="ns", workflow="wf", uid="u",
                                  me=Waiter(NOW, "r"), waiting=[], now=NOW)
    assert gate is not None and gate.admission.allowed
    assert gate.not_applied is not None and gate.not_applied.reason == "LimitNotApplied"
    assert "rate limit 1 per 1m" in gate.not_applied.message
    assert metrics.LIMITS_SKIPPED.labels("run_rate")._value.get() == before + 1
    outage = limits.outage()
    assert outage is not None and "127.0.0.1:1" in outage
    await limits.close()


async def test_skipped_step_limits_get_an_event() -> None:
    spec = WorkflowSpec.model_validate({"steps": [
        {"name": "call", "rateLimit": {"key": "api", "limit": 1, "per": "1m"},
         "concurrency": {"key": "api", "maxRunning": 1}, "log": {"message": "x"}}]})
    plan = Plan(actions=(CreateJob("call", 1, "r-call-1", "log", {}, None, {}),),
                status=WorkflowRunStatus(), requeue_after=None)
    limits = Limits(RedisSettings(url="redis://127.0.0.1:1/0"))
    before = metrics.LIMITS_SKIPPED.labels("step_rate")._value.get()
    gated = await limits.gate_steps(plan, spec, namespace="ns", uid="u", run_name="r", now=NOW)
    await limits.close()
    assert gated.actions[0] == plan.actions[0]  # open policy: the step starts
    [event] = [a for a in gated.actions if isinstance(a, EmitEvent)]
    assert event.type == "Warning" and event.reason == "LimitNotApplied"
    assert "step 'call': concurrency key 'api'" in event.message
    assert "step 'call': rate limit 'api'" in event.message
    assert metrics.LIMITS_SKIPPED.labels("step_rate")._value.get() == before + 1
