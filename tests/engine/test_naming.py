"""Job names: deterministic DNS labels, a hash only when the plain name does not fit."""

from __future__ import annotations

import re

import pytest
from taskforge.engine.naming import hashed_job_name, job_labels, job_name, label_value

DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


@pytest.mark.parametrize(
    ("run", "step", "attempt", "expected"),
    [
        ("run1", "fetch", 1, "run1-fetch-1"),
        ("nightly-29300000", "post", 12, "nightly-29300000-post-12"),
        ("a" * 40, "b" * 20, 1, "a" * 40 + "-" + "b" * 20 + "-1"),  # exactly 63
    ],
)
def test_short_names_are_kept_readable(run: str, step: str, attempt: int, expected: str) -> None:
    assert job_name(run, step, attempt) == expected


@pytest.mark.parametrize(
    ("run", "step", "attempt"),
    [
        ("a" * 40, "b" * 21, 1),  # 64 characters
        ("r" * 253, "s" * 40, 100),
        ("my.run.with.dots", "fetch", 1),  # dots are not allowed in a DNS label
        ("Upper", "fetch", 3),
    ],
)
def test_long_or_invalid_names_get_a_hash_and_fit(run: str, step: str, attempt: int) -> None:
    name = job_name(run, step, attempt)
    assert len(name) <= 63
    assert DNS.match(name), name
    assert name.endswith(f"-{attempt}")
    assert re.search(r"-[0-9a-f]{8}-\d+$", name)
    assert job_name(run, step, attempt) == name  # deterministic


def test_names_that_share_a_long_prefix_differ() -> None:
    run = "x" * 80
    names = {job_name(run, s, a) for s in ("step-a", "step-b") for a in (1, 2)}
    names |= {job_name(run + "y", "step-a", 1)}
    assert len(names) == 5


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a-b", "c", 1), ("a", "b-c", 1)),
        (("build-1", "x", 2), ("build", "1-x", 2)),
        (("r", "s-1", 1), ("r-s", "1", 1)),
    ],
)
def test_hashed_names_tell_apart_what_readable_names_confuse(
    first: tuple[str, str, int], second: tuple[str, str, int]
) -> None:
    assert job_name(*first) == job_name(*second)
    assert hashed_job_name(*first) != hashed_job_name(*second)
    for parts in (first, second):
        name = hashed_job_name(*parts)
        assert DNS.match(name) and len(name) <= 63, name
        assert name.startswith(f"{parts[0]}-{parts[1]}-") and name.endswith(f"-{parts[2]}")
        assert hashed_job_name(*parts) == name  # deterministic


def test_attempt_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempt"):
        hashed_job_name("r", "s", 0)
    with pytest.raises(ValueError, match="attempt"):
        job_name("r", "s", 0)


@pytest.mark.parametrize(
    "text", ["wf", "a" * 63, "a" * 64, "my.workflow.example.com" * 10, "-lead", "trail."]
)
def test_label_values_are_valid(text: str) -> None:
    value = label_value(text)
    assert len(value) <= 63 and LABEL.match(value), value
    if len(text) <= 63 and LABEL.match(text):
        assert value == text


def test_job_labels_name_run_step_attempt_and_workflow() -> None:
    assert job_labels("wf", "run1", "fetch", 2) == {
        "taskforge.io/workflow": "wf",
        "taskforge.io/run": "run1",
        "taskforge.io/step": "fetch",
        "taskforge.io/attempt": "2",
    }
    assert "taskforge.io/workflow" not in job_labels(None, "run1", "fetch", 1)
