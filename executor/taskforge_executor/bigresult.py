"""Results larger than the termination message: printed to the log, or refused over 1 MiB.

The termination message holds 4 KiB. A larger result (at most `MAX_RESULT_BYTES`) is printed
as the last lines of the container log in the format of `taskforge.api.resultlog`, and the
termination message carries a per-key summary plus where to find the rest; the operator
reads those lines, checks their SHA-256 and stores the result for the run. A step pod still
needs no RBAC: the kubelet keeps the log, the operator fetches it.

A result over the limit fails the step (permanently: the same step gives the same result)
with a message that states both sizes, instead of reaching downstream steps cut.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import IO

from taskforge.api.resultlog import MAX_RESULT_BYTES, compact, log_lines, log_ref, summarize
from taskforge.api.results import TERMINATION_MESSAGE_MAX_BYTES

from taskforge_executor.outcome import Outcome

_SUMMARY_MARGIN = 128
"""Bytes the summary leaves free in the termination message for escapes and the ref."""


def _fits(outcome: Outcome) -> bool:
    wire = outcome.to_wire()
    data = json.dumps(wire, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    return len(data) <= TERMINATION_MESSAGE_MAX_BYTES


def _summary_budget(outcome: Outcome, ref: dict[str, object] | None) -> int:
    bare = replace(outcome, outputs={}, result_log=ref)
    envelope = len(compact(bare.to_wire()))
    return max(TERMINATION_MESSAGE_MAX_BYTES - envelope - _SUMMARY_MARGIN, 64)


def prepare(outcome: Outcome, stream: IO[str]) -> Outcome:
    """The outcome to put in the termination message, after printing a large result."""
    if _fits(outcome):
        return outcome
    data = compact(outcome.outputs)
    if len(data) > MAX_RESULT_BYTES:
        error = (f"result too large: the step's outputs are {len(data):,} bytes as JSON, over"
                 f" the limit of {MAX_RESULT_BYTES:,} bytes (1 MiB) per step")
        if not outcome.ok and outcome.error:
            error = f"{outcome.error}; {error}"
        failed = replace(outcome, ok=False, outputs={}, error=error, retryable=False,
                         retry_after=None)
        return replace(failed, outputs=summarize(outcome.outputs, _summary_budget(failed, None)))
    ref = log_ref(data)
    stream.flush()
    for line in log_lines(data):
        stream.write(line + "\n")
    stream.flush()
    return replace(outcome, outputs=summarize(outcome.outputs, _summary_budget(outcome, ref)),
                   result_log=ref)
