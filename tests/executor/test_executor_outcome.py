"""The termination message encoder and the redactor, in-process (they are pure)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from taskforge_executor.console import REDACTED, Redactor
from taskforge_executor.outcome import CUT_MARKER, Outcome, encode

LIMIT = 4096

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=30)
        | st.dictionaries(st.text(max_size=40), children, max_size=30)
    ),
    max_leaves=200,
)


def test_small_outcome_is_exact() -> None:
    outcome = Outcome(
        ok=False, outputs={"status": 503}, error="boom", retryable=True, retry_after=7
    )
    assert json.loads(encode(outcome)) == {
        "ok": False,
        "outputs": {"status": 503},
        "error": "boom",
        "retryable": True,
        "retryAfter": 7,
    }


def test_big_string_is_cut_and_small_values_survive() -> None:
    outputs = {"status": 200, "headers": {"etag": "v1"}, "body": "é" * 10_000}
    data = encode(Outcome(ok=True, outputs=outputs))
    message = json.loads(data)

    assert len(data) <= LIMIT
    assert message["truncated"] is True
    assert message["outputs"]["status"] == 200
    assert message["outputs"]["headers"] == {"etag": "v1"}
    assert message["outputs"]["body"].endswith(CUT_MARKER)
    assert len(data) > LIMIT - 64  # the space is used, not wasted


def test_long_list_says_how_many_items_were_left_out() -> None:
    outputs = {"items": list(range(5000))}
    message = json.loads(encode(Outcome(ok=True, outputs=outputs)))

    items = message["outputs"]["items"]
    assert items[:3] == [0, 1, 2]
    assert items[-1].startswith(CUT_MARKER)
    assert items[-1].endswith(f"{5000 - len(items) + 1} more items")


def test_many_keys_say_how_many_were_left_out() -> None:
    outputs = {f"key-{i}": i for i in range(2000)}
    message = json.loads(encode(Outcome(ok=True, outputs=outputs)))

    kept = message["outputs"]
    assert kept[CUT_MARKER] == f"{2000 - len(kept) + 1} more keys"


def test_huge_error_is_cut() -> None:
    data = encode(Outcome(ok=False, error="x" * 100_000, retryable=False))
    message = json.loads(data)
    assert len(data) <= LIMIT
    assert message["error"].endswith(CUT_MARKER)


@settings(max_examples=100, deadline=None)
@given(outputs=st.dictionaries(st.text(max_size=60), json_values, max_size=40), error=st.text())
def test_any_outputs_encode_to_valid_json_within_the_limit(
    outputs: dict[str, Any], error: str
) -> None:
    data = encode(Outcome(ok=False, outputs=outputs, error=error, retryable=True))
    message = json.loads(data)

    assert len(data) <= LIMIT
    assert message["ok"] is False
    if not message.get("truncated"):
        assert message["outputs"] == json.loads(json.dumps(outputs))


def test_redactor_text_and_structures() -> None:
    redactor = Redactor()
    redactor.add("tok")
    redactor.add("tok-longer")
    redactor.add("")
    redactor.add(None)

    assert redactor.text("a tok-longer b tok") == f"a {REDACTED} b {REDACTED}"
    value = {"tok": ["x tok", 1, {"k": "tok-longer"}], "n": None}
    assert redactor.data(value) == {
        REDACTED: [f"x {REDACTED}", 1, {"k": REDACTED}],
        "n": None,
    }


def test_secret_with_json_special_characters_is_redacted_structurally() -> None:
    redactor = Redactor()
    redactor.add('p"a\\ss')
    data = encode(Outcome(ok=True, outputs=redactor.data({"echo": 'x p"a\\ss y'})))

    assert json.loads(data)["outputs"] == {"echo": f"x {REDACTED} y"}
