"""Leader election over a `coordination.k8s.io/v1` Lease: the decisions, with time as a parameter.

The rules are client-go's `leaderelection` package (what controller-runtime and every Go
controller use), so a Taskforge Lease behaves like any other in the cluster:

* A candidate never trusts the clocks of others. It takes over a Lease only when the record
  it last saw (told apart by `resourceVersion`) has not changed for `leaseDurationSeconds`
  by its OWN monotonic clock, counted from when it first saw that version. A leader that
  renews every `retry_period` is therefore never deposed by a candidate whose wall clock
  runs ahead.
* An empty `holderIdentity` (a leader that released the Lease on a clean stop) may be taken
  at once: this is what makes a rolling update fail over in a retry period, not a lease term.
* The leader counts as leading only while its last successful renewal is younger than
  `renew_deadline`, which is shorter than the lease: it stops acting before any candidate can
  take over (the margin is `lease_duration - renew_deadline`).
* Every write is conditional on the `resourceVersion` that was read (the adapter sends it),
  so of two candidates racing for a free Lease one gets a 409 and stays a follower.

This module decides; `handlers/leadership.py` reads and writes the Lease and keeps time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime


@dataclass(frozen=True)
class Timing:
    """The three durations of client-go's LeaderElectionConfig, in seconds."""

    lease_duration: float = 10.0
    renew_deadline: float = 7.0
    retry_period: float = 1.0
    """client-go's default is 2 s. A standby notices a silent leader up to two retry periods
    late (it sees the last renewal one period late, and checks once a period), so with 2 s a
    crash took up to 14.8 s to fail over, over the 15 s target once the new leader had caught
    up on a busy machine; 1 s costs the leader one more GET and PUT a second."""

    def problem(self) -> str | None:
        """Why these durations are unsafe (client-go's own rules), or None."""
        if self.retry_period <= 0:
            return "the retry period must be positive"
        if self.renew_deadline <= self.retry_period * 1.2:
            return "the renew deadline must be more than 1.2 times the retry period"
        if self.lease_duration <= self.renew_deadline:
            return "the lease duration must be longer than the renew deadline"
        return None


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's spec as the election reads it, plus the resourceVersion it was read at."""

    holder: str | None = None
    duration_seconds: int | None = None
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0
    resource_version: str | None = None


@dataclass(frozen=True)
class Observed:
    """The version of the Lease this candidate saw last, and its own clock when it first saw
    it (`time.monotonic()`; never the record's renewTime, which is another host's clock)."""

    resource_version: str | None
    since: float


class Verdict(enum.Enum):
    CREATE = "create"  # no Lease yet: create it, holding it
    ACQUIRE = "acquire"  # free or expired: take it over (a transition)
    RENEW = "renew"  # ours: renew it
    WAIT = "wait"  # held by another, still valid


def observe(previous: Observed | None, record: LeaseRecord | None, now: float) -> Observed:
    """The observation after reading `record` at `now`: the clock restarts on every change."""
    version = record.resource_version if record is not None else None
    if previous is not None and previous.resource_version == version:
        return previous
    return Observed(version, now)


def decide(
    record: LeaseRecord | None, me: str, observed: Observed, now: float, timing: Timing
) -> Verdict:
    """What candidate `me` does with the Lease it just read (None: there is none)."""
    if record is None:
        return Verdict.CREATE
    if record.holder == me:
        return Verdict.RENEW
    if not record.holder:
        return Verdict.ACQUIRE
    duration = record.duration_seconds or timing.lease_duration
    if now - observed.since >= duration:
        return Verdict.ACQUIRE
    return Verdict.WAIT


def desired(
    record: LeaseRecord | None, me: str, verdict: Verdict, wall_now: datetime, timing: Timing
) -> LeaseRecord:
    """The record to write for a CREATE, ACQUIRE or RENEW verdict."""
    duration = max(1, round(timing.lease_duration))
    if verdict is Verdict.CREATE or record is None:
        return LeaseRecord(me, duration, wall_now, wall_now, 0, None)
    if verdict is Verdict.RENEW:
        return replace(record, duration_seconds=duration, renew_time=wall_now,
                       acquire_time=record.acquire_time or wall_now)
    if verdict is Verdict.ACQUIRE:
        transitions = record.transitions + (1 if record.holder else 0)
        return replace(record, holder=me, duration_seconds=duration, acquire_time=wall_now,
                       renew_time=wall_now, transitions=transitions)
    raise ValueError(f"nothing to write for {verdict}")


def released(record: LeaseRecord, wall_now: datetime) -> LeaseRecord:
    """The record a leader writes when it stops cleanly (client-go's ReleaseOnCancel): no
    holder, a one-second term, so that a standby takes over at its next retry."""
    return replace(record, holder=None, duration_seconds=1, acquire_time=wall_now,
                   renew_time=wall_now)


def still_leading(last_renewed: float, now: float, timing: Timing) -> bool:
    """Whether a leader whose last successful renewal was at `last_renewed` may go on acting.
    Past the renew deadline it must stop: a candidate may take over from lease_duration on."""
    return now - last_renewed < timing.renew_deadline
