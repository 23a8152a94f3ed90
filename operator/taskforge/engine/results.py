"""Reading what a step attempt reported, and keeping it small enough for status.

The executor writes a JSON object as its termination message; containers of the user's own
image may write nothing or arbitrary text. Either way the engine gets a `StepResult`, and
the exit code alone still tells success, a retryable failure and a permanent one apart.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from taskforge.api.resultlog import summarize
from taskforge.api.results import (
    EXIT_OK,
    EXIT_PERMANENT,
    EXIT_RETRYABLE,
    KEY_ERROR,
    KEY_HTTP_STATUS,
    KEY_LOG,
    KEY_OK,
    KEY_OUTPUTS,
    KEY_RETRY_AFTER,
    KEY_RETRYABLE,
    TERMINATION_MESSAGE_MAX_BYTES,
)

__all__ = [
    "EXIT_OK",
    "EXIT_PERMANENT",
    "EXIT_RETRYABLE",
    "MAX_MESSAGE_CHARS",
    "MAX_OUTPUT_BYTES",
    "StepResult",
    "bound_message",
    "bound_outputs",
    "inline_log",
    "parse_result",
]

MAX_OUTPUT_BYTES = 2048
"""Per-step cap for outputs in status."""

MIN_OUTPUT_BYTES = 256
OUTPUTS_TOTAL_BYTES = 384 * 1024
"""Budget for all steps' outputs together. 2 KiB per step would allow 2 MiB for a 1,000-step
run, beyond etcd's 1.5 MiB object limit (the status patch would then fail and the run would
be stuck), so big runs get a smaller per-step share; see `output_budget`."""
MAX_MESSAGE_CHARS = 512
"""Messages (errors) are cut too: they are repeated in status, events and dead letters."""


@dataclass(frozen=True)
class StepResult:
    """How one attempt ended, as far as the executor said (or the exit code tells)."""

    ok: bool
    retryable: bool
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    retry_after: float | None = None
    reported: bool = False
    """True when the message was a JSON object, i.e. the executor (or step) reported."""
    http_status: int | None = None
    """The HTTP status of a failed http or slack step (for `retry.on: [HTTPStatus]`)."""


def _exit_error(exit_code: int | None) -> str:
    if exit_code is None:
        return "the step ended without an exit code"
    if exit_code == EXIT_RETRYABLE:
        return f"exit code {exit_code} (retryable failure)"
    if exit_code == EXIT_PERMANENT:
        return f"exit code {exit_code} (permanent failure)"
    return f"exit code {exit_code}"


def _load(message: str | None) -> dict[str, Any] | None:
    if not message:
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def inline_log(termination_message: str | None) -> str | None:
    """The executor's whole log when its termination message carries it (`KEY_LOG`).

    Only the executor's own format counts (an object with `ok`): a container of the user's
    image that writes a plain object writes its outputs, whatever its keys. The kubelet keeps
    at most 4 KiB of a message, so the text is small; anything but a string is no log."""
    if termination_message is None or len(termination_message) > TERMINATION_MESSAGE_MAX_BYTES:
        return None  # not one the kubelet kept
    data = _load(termination_message)
    if data is None or not isinstance(data.get(KEY_OK), bool):
        return None
    log = data.get(KEY_LOG)
    return log if isinstance(log, str) else None


def parse_result(termination_message: str | None, exit_code: int | None) -> StepResult:
    """Combine the termination message with the exit code.

    Exit code 78 is permanent whatever the message says: the executor chose it on purpose.
    Any other non-zero code (a user's container exiting 1, a killed process) is retryable
    unless the message says `retryable: false`, mirroring how a Job's backoffLimit treats it.
    """
    data = _load(termination_message)
    code_ok = exit_code == EXIT_OK
    if data is None:
        return StepResult(
            ok=code_ok,
            retryable=not code_ok and exit_code != EXIT_PERMANENT,
            error=None if code_ok else _exit_error(exit_code),
        )
    if KEY_OK not in data and KEY_OUTPUTS not in data:
        # A container step that wrote a plain JSON object: that object is its outputs.
        data = {KEY_OUTPUTS: data}
    ok_value = data.get(KEY_OK)
    ok = ok_value if isinstance(ok_value, bool) else code_ok
    raw_outputs = data.get(KEY_OUTPUTS)
    if raw_outputs is None:
        outputs: dict[str, Any] = {}
    elif isinstance(raw_outputs, dict):
        outputs = raw_outputs
    else:
        outputs = {"value": raw_outputs}
    error_value = data.get(KEY_ERROR)
    error = str(error_value) if error_value not in (None, "") else None
    if not ok and error is None:
        error = _exit_error(exit_code)
    retryable_value = data.get(KEY_RETRYABLE)
    retryable = (not ok) and exit_code != EXIT_PERMANENT and retryable_value is not False
    after = data.get(KEY_RETRY_AFTER)
    retry_after = (
        float(after)
        if isinstance(after, int | float)
        and not isinstance(after, bool)
        and math.isfinite(after)
        and after >= 0
        else None
    )
    status_value = data.get(KEY_HTTP_STATUS)
    http_status = (
        status_value
        if isinstance(status_value, int) and not isinstance(status_value, bool)
        and 100 <= status_value <= 599
        else None
    )
    return StepResult(
        ok=ok,
        retryable=retryable,
        outputs=outputs,
        error=error,
        retry_after=retry_after,
        reported=True,
        http_status=http_status,
    )


def output_budget(step_count: int) -> int:
    """Bytes of outputs JSON one step may keep in status: 2 KiB up to 192 steps, then the
    total budget shared out (393 B each for 1,000 steps), but never under 256 B."""
    share = OUTPUTS_TOTAL_BYTES // max(step_count, 1)
    return max(MIN_OUTPUT_BYTES, min(MAX_OUTPUT_BYTES, share))


def bound_outputs(outputs: dict[str, Any] | None, limit: int = MAX_OUTPUT_BYTES) -> dict[str, Any]:
    """Outputs as stored in status without a result store (reused steps): unchanged up to
    `limit` bytes of JSON, else truncated per key (`taskforge.api.resultlog.summarize`):
    small keys stay exact, each left-out key is named in `_truncated` with its true size, so
    a template reading it fails saying so (engine/outputs.py)."""
    if not outputs:
        return {}
    return summarize(outputs, limit)


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def bound_message(message: str) -> str:
    """A message cut to a bounded length, marked with an ellipsis when cut."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 1] + "\u2026"
