"""Termination messages and exit codes -> StepResult; outputs bounded for status."""

from __future__ import annotations

import json
from typing import Any

import pytest
from taskforge.engine.results import (
    EXIT_PERMANENT,
    EXIT_RETRYABLE,
    MAX_OUTPUT_BYTES,
    bound_message,
    bound_outputs,
    inline_log,
    output_budget,
    parse_result,
)

CASES: list[tuple[str, str | None, int | None, dict[str, Any]]] = [
    ("json success", '{"ok": true, "outputs": {"id": 7}}', 0,
     {"ok": True, "retryable": False, "outputs": {"id": 7}, "error": None}),
    ("no message, exit 0", None, 0, {"ok": True, "outputs": {}, "error": None}),
    ("non-json message, exit 0", "hello", 0, {"ok": True, "outputs": {}}),
    ("exit 75 without message", None, EXIT_RETRYABLE,
     {"ok": False, "retryable": True, "error": "exit code 75 (retryable failure)"}),
    ("exit 78 without message", "", EXIT_PERMANENT,
     {"ok": False, "retryable": False, "error": "exit code 78 (permanent failure)"}),
    ("exit 1 from a user container", "Traceback...", 1,
     {"ok": False, "retryable": True, "error": "exit code 1"}),
    ("no exit code", None, None, {"ok": False, "retryable": True}),
    ("executor says permanent", '{"ok": false, "error": "404", "retryable": false}', 75,
     {"ok": False, "retryable": False, "error": "404"}),
    ("exit 78 wins over retryable true", '{"ok": false, "retryable": true}', 78,
     {"ok": False, "retryable": False, "error": "exit code 78 (permanent failure)"}),
    ("retryAfter hint", '{"ok": false, "error": "429", "retryAfter": 30}', 75,
     {"retryable": True, "retry_after": 30.0}),
    ("negative retryAfter ignored", '{"ok": false, "retryAfter": -1}', 75, {"retry_after": None}),
    ("bool retryAfter ignored", '{"ok": false, "retryAfter": true}', 75, {"retry_after": None}),
    ("outputs not an object", '{"ok": true, "outputs": [1, 2]}', 0,
     {"outputs": {"value": [1, 2]}}),
    ("json array message", "[1]", 0, {"ok": True, "outputs": {}, "reported": False}),
    ("failure outputs kept", '{"ok": false, "outputs": {"status": 503}, "error": "503"}', 75,
     {"outputs": {"status": 503}, "error": "503"}),
]


@pytest.mark.parametrize(("case", "message", "code", "expected"), CASES, ids=[c[0] for c in CASES])
def test_parse_result(case: str, message: str | None, code: int | None,
                      expected: dict[str, Any]) -> None:
    result = parse_result(message, code)
    for key, value in expected.items():
        assert getattr(result, key) == value, (case, key)


def test_small_outputs_are_kept_as_they_are() -> None:
    outputs = {"status": 200, "body": {"id": 1}}
    assert bound_outputs(outputs) is outputs
    assert bound_outputs(None) == {}


@pytest.mark.parametrize(("char", "size"), [("é", MAX_OUTPUT_BYTES), ("x", 10_000), ('"', 5_000)])
def test_large_outputs_are_truncated_per_key_with_the_true_size(char: str, size: int) -> None:
    outputs = {"body": char * size, "status": 200}
    bounded = bound_outputs(outputs)
    true_size = len(json.dumps(char * size, ensure_ascii=False).encode())
    assert bounded == {"status": 200, "_truncated": {"body": true_size}}
    encoded = json.dumps(bounded, separators=(",", ":"), ensure_ascii=False).encode()
    assert len(encoded) <= MAX_OUTPUT_BYTES


@pytest.mark.parametrize(
    ("steps", "budget"), [(1, 2048), (192, 2048), (500, 786), (1000, 393), (2000, 256)]
)
def test_output_budget_shrinks_for_big_runs(steps: int, budget: int) -> None:
    assert output_budget(steps) == budget
    assert steps * output_budget(steps) <= 2000 * 256 + 384 * 1024


def test_messages_are_bounded() -> None:
    assert bound_message("short") == "short"
    long = bound_message("x" * 10_000)
    assert len(long) == 512 and long.endswith("\u2026")


INLINE_LOG_CASES: list[tuple[str, str | None, str | None]] = [
    ("the executor's log", '{"ok":true,"outputs":{},"log":"INFO a\\nINFO b\\n"}',
     "INFO a\nINFO b\n"),
    ("an empty log is a log", '{"ok":false,"error":"x","log":""}', ""),
    ("no log key", '{"ok":true,"outputs":{}}', None),
    ("no message", None, None),
    ("not JSON", "Traceback (most recent call last)", None),
    ("not an object", '["log"]', None),
    ("a user's plain object (its outputs)", '{"log":"not ours"}', None),
    ("ok that is no boolean", '{"ok":"yes","log":"x"}', None),
    ("a log that is no string", '{"ok":true,"log":["x"]}', None),
    ("longer than a kubelet keeps", '{"ok":true,"log":"' + "x" * 4096 + '"}', None),
]


@pytest.mark.parametrize(("message", "expect"), [c[1:] for c in INLINE_LOG_CASES],
                         ids=[c[0] for c in INLINE_LOG_CASES])
def test_inline_log(message: str | None, expect: str | None) -> None:
    assert inline_log(message) == expect
