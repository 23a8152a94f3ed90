"""Pure helpers for step concurrency waiters (issue 19, priorities): the queue band of a
priority, the run a holder belongs to, and which steps of a cached run keep a place."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from enginekit import T0, at, created, facts, fail, retry, st, step, workflow
from taskforge.engine.defer import hold_back
from taskforge.engine.limits import holder_run_uid, priority_band, waiting_places
from taskforge.engine.planner import plan


@pytest.mark.parametrize(
    ("priority", "band"),
    [(1000, 0), (10, 990), (0, 1000), (-1, 1001), (-1000, 2000), (5000, 0), (-5000, 2000)],
)
def test_priority_band_puts_higher_first_and_clamps(priority: int, band: int) -> None:
    assert priority_band(priority) == band


def test_band_order_is_priority_order() -> None:
    priorities = [3, -7, 1000, 0, 10, -1000]
    assert sorted(priorities, key=priority_band) == sorted(priorities, reverse=True)


@pytest.mark.parametrize(
    ("holder", "uid"),
    [("0f9c-uid/deploy", "0f9c-uid"), ("uid/step/with/slash", "uid"), ("bare", "bare")],
)
def test_holder_run_uid(holder: str, uid: str) -> None:
    assert holder_run_uid(holder) == uid


SPEC: dict[str, Any] = {
    "steps": [
        {"name": "a", "concurrency": {"key": "db", "maxRunning": 1}},
        {"name": "b", "concurrency": {"key": "db", "maxRunning": 1}},
        {"name": "c"},
        {"name": "d", "concurrency": {"key": "api", "maxRunning": 2}},
    ],
    "finally": [{"name": "f", "concurrency": {"key": "db", "maxRunning": 1}}],
}


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        ({}, []),
        ({"a": "Waiting"}, [("step:ns/db", "u1/a")]),
        ({"a": "Running", "b": "Waiting", "c": "Waiting"}, [("step:ns/db", "u1/b")]),
        ({"d": "Waiting", "f": "Waiting"}, [("step:ns/api", "u1/d"), ("step:ns/db", "u1/f")]),
        ({"a": "Succeeded", "b": "Cancelled", "d": "Pending"}, []),
    ],
)
def test_waiting_places(phases: dict[str, str], expected: list[tuple[str, str]]) -> None:
    steps = {name: {"phase": phase} for name, phase in phases.items()}
    assert waiting_places("ns", "u1", SPEC, steps) == expected


def test_waiting_places_tolerates_a_bare_spec() -> None:
    assert waiting_places("ns", "u1", {}, {"a": {"phase": "Waiting"}}) == []
    assert waiting_places("ns", "u1", {"steps": [{"name": "a", "concurrency": None}]},
                          {"a": {"phase": "Waiting"}}) == []


# --- a freed slot is offered to its waiting step now, not at its waitUntil ------------------

TWO = workflow(step("a"), step("b"))


def _held(until: float = 30.0) -> Any:
    first = plan(facts(TWO))
    return hold_back(first, step="a", run_name="run1", until=at(until), now=T0,
                     reason="concurrency key 'db': 1 of 1 running; 1 in line")


@pytest.mark.parametrize(
    ("offers", "now", "launched"),
    [
        (frozenset(), 5.0, []),  # not offered, not due: waits for its waitUntil
        (frozenset({"a"}), 5.0, [("a", 1)]),  # offered: launched at once, same attempt
        (frozenset({"b"}), 5.0, []),  # an offer for another step does nothing for `a`
        (frozenset(), 30.0, [("a", 1)]),  # due anyway
    ],
)
def test_a_slot_offer_launches_a_waiting_step_now(
    offers: frozenset[str], now: float, launched: list[tuple[str, int]]
) -> None:
    held = _held()
    p = plan(replace(facts(TWO, held.status, now=at(now)), slot_offers=offers))
    assert [c for c in created(p) if c[0] == "a"] == launched
    if launched:
        assert st(p, "a").phase == "Running" and st(p, "a").job_name == "run1-a-1"


def test_an_offer_never_cuts_a_retry_backoff_short() -> None:
    """Only Waiting steps take offers; a Retrying step keeps its backoff."""
    spec = workflow(step("a", retry=retry(2, delay="60s")))
    first = plan(facts(spec))
    p = plan(replace(facts(spec, first.status, [fail("a")], now=at(1)),
                     slot_offers=frozenset({"a"})))
    assert st(p, "a").phase == "Retrying" and created(p) == []
