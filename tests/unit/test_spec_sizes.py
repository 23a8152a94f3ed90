"""The spec text budget as the models check it offline (api/sizes.py).

The CRD checks the same sum with a CEL rule; tests/e2e/security/test_sizes.py applies a spec
exactly at the budget and one character over it to a real apiserver, so the two agree.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from taskforge.api import WorkflowSpec
from taskforge.api.sizes import SPEC_TEXT_MAX_CHARS, spec_text, step_text
from taskforge.api.steps import Step

# One step of each type with every text field set; (step, characters counted).
STEPS: list[tuple[dict[str, Any], int]] = [
    ({"name": "a", "when": "true", "log": {"message": "hello"}}, 4 + 5),
    (
        {
            "name": "b",
            "http": {
                "url": "https://x.io",
                "body": "abc",
                "headers": [{"name": "X-A", "value": "12"}, {"name": "X-S"}],
                "query": {"q": "42"},
            },
        },
        12 + 3 + (3 + 2) + 3 + (1 + 2),
    ),
    (
        {"name": "c", "script": {"source": "echo", "env": [{"name": "AB", "value": "xyz"}]}},
        4 + 2 + 3,
    ),
    (
        {
            "name": "d",
            "container": {
                "image": "busybox",  # not counted: bounded at 512
                "command": ["sh", "-c"],
                "args": ["true"],
                "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            },
        },
        2 + 2 + 4 + 1,
    ),
    ({"name": "e", "slack": {"webhookUrlFrom": {"name": "s", "key": "k"}, "text": "hi"}}, 2),
    (
        {
            "name": "f",
            "email": {"host": "smtp", "from": "a@b.c", "to": ["x@y.z"], "subject": "S",
                      "body": "body"},
        },
        1 + 4 + 5,
    ),
]


TYPES = [next(k for k in s if k not in ("name", "when")) for s, _ in STEPS]


@pytest.mark.parametrize(("step", "chars"), STEPS, ids=TYPES)
def test_step_text_counts_every_text_field(step: dict[str, Any], chars: int) -> None:
    assert step_text(Step.model_validate(step)) == chars


def _spec(message_chars: int, finally_chars: int = 0) -> dict[str, Any]:
    steps = []
    left = message_chars
    i = 0
    while left > 0:
        n = min(left, 4096)
        steps.append({"name": f"s{i}", "log": {"message": "m" * n}})
        left -= n
        i += 1
    spec: dict[str, Any] = {"steps": steps}
    if finally_chars:
        spec["finally"] = [{"name": "last", "log": {"message": "f" * finally_chars}}]
    return spec


def test_a_spec_at_the_budget_is_valid_and_one_more_character_is_not() -> None:
    at = WorkflowSpec.model_validate(_spec(SPEC_TEXT_MAX_CHARS - 10, finally_chars=10))
    assert spec_text(at.all_steps) == SPEC_TEXT_MAX_CHARS
    with pytest.raises(ValidationError, match="at most 131072 characters"):
        WorkflowSpec.model_validate(_spec(SPEC_TEXT_MAX_CHARS - 10, finally_chars=11))


def test_characters_not_bytes_are_counted() -> None:
    # CEL's size() counts code points, and so does the mirror: the byte size of non-ASCII
    # text is left to the operator's check of the whole run object.
    step = Step.model_validate({"name": "u", "log": {"message": "\u00e9\u20ac\U0001f600"}})
    assert step_text(step) == 3
