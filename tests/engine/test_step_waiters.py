"""Pure helpers for step concurrency waiters (issue 19, priorities): the queue band of a
priority, the run a holder belongs to, and which steps of a cached run keep a place."""

from __future__ import annotations

from typing import Any

import pytest
from taskforge.engine.limits import holder_run_uid, priority_band, waiting_places


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
