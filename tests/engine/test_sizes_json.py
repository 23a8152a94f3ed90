"""json_size by orjson agrees to the byte with the stdlib's compact UTF-8 encoding (issue 14)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from taskforge.engine.sizes import json_size


def _stdlib(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          default=str).encode())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False, width=64)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(JSON)
def test_agrees_with_the_stdlib_on_json_values(value: Any) -> None:
    if isinstance(value, float) or any(isinstance(v, float) for v in _leaves(value)):
        # float text differs in form (1e+16 vs 1e16); both are valid, the size may differ by
        # a byte or two: only bound it
        assert abs(json_size(value) - _stdlib(value)) <= 4 * len(list(_leaves(value)))
    else:
        assert json_size(value) == _stdlib(value)


@pytest.mark.parametrize("value", [
    {"é": "ü€😀", "a": [1, None, True]},
    {"big": 2**70},          # past 64 bits: the stdlib's path
    {1: "int key"},          # the stdlib writes it as "1"
    {"when": object()},      # default=str either way
])
def test_cases(value: Any) -> None:
    if "when" in value:
        assert json_size(value) > 0
    else:
        assert json_size(value) == _stdlib(value)


def _leaves(value: Any) -> Any:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value
