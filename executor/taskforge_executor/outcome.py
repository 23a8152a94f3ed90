"""A step's outcome and its encoding as the pod's termination message.

The termination message is the only channel from a step pod to the operator (step pods
have no RBAC), and the kubelet keeps at most 4096 bytes of it. So the encoder shrinks the
outputs until the JSON fits, marks the message `"truncated": true` and marks each cut
value, rather than letting the kubelet cut the JSON mid-way (which would make it
unparseable) or dropping outputs silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from taskforge.api.resultlog import KEY_RESULT_LOG
from taskforge.api.results import (
    KEY_ERROR,
    KEY_HTTP_STATUS,
    KEY_LOG,
    KEY_OK,
    KEY_OUTPUTS,
    KEY_RETRY_AFTER,
    KEY_RETRYABLE,
    TERMINATION_MESSAGE_MAX_BYTES,
)

KEY_TRUNCATED = "truncated"
"""Set to true when the outputs were shrunk to fit; each cut value also ends in CUT_MARKER."""
CUT_MARKER = "…[truncated]"
MAX_ERROR_BYTES = 1024
_MIN_STRING_BYTES = 16
_GOOD_ENOUGH = 256


class StepError(Exception):
    """A failed step: raised by a step runner, turned into exit code 75 or 78 by `main`.

    `outputs` carries what is known anyway (an HTTP status, a script's stdout tail), so a
    failure is as debuggable as a success.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: int | None = None,
        outputs: dict[str, Any] | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.outputs = outputs or {}
        self.http_status = http_status


def permanent(
    message: str, outputs: dict[str, Any] | None = None, http_status: int | None = None
) -> StepError:
    """A failure that retrying the same step cannot fix (bad config, HTTP 404, SMTP 5xx).

    `http_status` names the reply's status so the operator can still retry it when the
    step's policy lists it (`retry.on: [HTTPStatus]`, `retry.httpStatus`).
    """
    return StepError(message, retryable=False, outputs=outputs, http_status=http_status)


def retryable(
    message: str,
    retry_after: int | None = None,
    outputs: dict[str, Any] | None = None,
    http_status: int | None = None,
) -> StepError:
    """A transient failure (connection refused, timeout, HTTP 503, SMTP 4xx)."""
    return StepError(
        message, retryable=True, retry_after=retry_after, outputs=outputs, http_status=http_status
    )


@dataclass(frozen=True)
class Outcome:
    ok: bool
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    retryable: bool | None = None
    retry_after: int | None = None
    http_status: int | None = None
    result_log: dict[str, Any] | None = None
    """Set when the whole result was printed to the log (see bigresult.py)."""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {KEY_OK: self.ok, KEY_OUTPUTS: self.outputs}
        if self.error is not None:
            wire[KEY_ERROR] = _cut_string(self.error, MAX_ERROR_BYTES)
        if self.retryable is not None:
            wire[KEY_RETRYABLE] = self.retryable
        if self.retry_after is not None:
            wire[KEY_RETRY_AFTER] = self.retry_after
        if self.http_status is not None:
            wire[KEY_HTTP_STATUS] = self.http_status
        if self.result_log is not None:
            wire[KEY_RESULT_LOG] = self.result_log
        return wire


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def _cut_string(text: str, budget: int) -> str:
    """`text` cut so its JSON encoding takes about `budget` bytes, marker included."""
    if len(_dumps(text)) <= budget:
        return text
    keep = max(budget - len(_dumps(CUT_MARKER)), 0)
    raw = text.encode()[:keep]
    cut = raw.decode(errors="ignore")
    # JSON escapes (quotes, control characters) make the encoding longer than the text.
    while cut and len(_dumps(cut + CUT_MARKER)) > budget:
        cut = cut[: max(len(cut) - max(len(cut) // 8, 1), 0)]
    return cut + CUT_MARKER


def _fair_caps(sizes: list[int], budget: int) -> int:
    """Largest cap c with sum(min(size, c)) <= budget: small values stay whole."""
    remaining, count = budget, len(sizes)
    for size in sorted(sizes):
        if size * count <= remaining:
            remaining -= size
            count -= 1
        else:
            return remaining // count
    return max(sizes, default=0)


def shrink(value: Any, budget: int) -> Any:
    """`value` made to encode in about `budget` bytes, cutting the largest parts first.

    Small members keep their exact value (a status code, a header); large ones share the
    rest. Lists and dicts that cannot keep all members end with a marker saying how many
    were left out, so nothing disappears without a trace.
    """
    if len(_dumps(value)) <= budget:
        return value
    if isinstance(value, str):
        return _cut_string(value, budget)
    if isinstance(value, dict):
        keys = list(value)
        overhead = sum(len(_dumps(str(k))) + 2 for k in keys) + 2
        sizes = [len(_dumps(value[k])) for k in keys]
        cap = _fair_caps(sizes, budget - overhead)
        if cap >= _MIN_STRING_BYTES + len(CUT_MARKER):
            return {k: shrink(value[k], cap) for k in keys}
        kept: dict[str, Any] = {}
        for k in keys:
            marker = {CUT_MARKER: f"{len(keys) - len(kept)} more keys"}
            if len(_dumps({**kept, k: value[k], **marker})) > budget:
                break
            kept[str(k)] = value[k]
        kept[CUT_MARKER] = f"{len(keys) - len(kept)} more keys"
        return kept
    if isinstance(value, list):
        overhead = len(value) + 2
        cap = _fair_caps([len(_dumps(v)) for v in value], budget - overhead)
        if cap >= _MIN_STRING_BYTES + len(CUT_MARKER):
            return [shrink(v, cap) for v in value]
        items: list[Any] = []
        for item in value:
            if len(_dumps([*items, item, f"{CUT_MARKER} {len(value)} more items"])) > budget:
                break
            items.append(item)
        return [*items, f"{CUT_MARKER} {len(value) - len(items)} more items"]
    return value


def encode(outcome: Outcome, limit: int = TERMINATION_MESSAGE_MAX_BYTES,
           log: str | None = None) -> bytes:
    """The termination message: the outcome's JSON, at most `limit` bytes, never invalid.

    `log`, the container's whole log so far (logcopy.py), is added only when it fits
    whole beside the complete result: the result always comes first."""
    wire = outcome.to_wire()
    data = _dumps(wire)
    if len(data) <= limit:
        if log is not None:
            with_log = _dumps({**wire, KEY_LOG: log})
            if len(with_log) <= limit:
                return with_log
        return data
    wire[KEY_TRUNCATED] = True
    envelope = len(_dumps({**wire, KEY_OUTPUTS: {}}))
    budget = limit - envelope
    best: bytes | None = None
    for _ in range(8):
        # shrink() is approximate (escapes, markers, nested caps): steer the budget until the
        # message fits and uses most of the space.
        wire[KEY_OUTPUTS] = shrink(outcome.outputs, budget)
        data = _dumps(wire)
        if len(data) <= limit:
            if best is None or len(data) > len(best):
                best = data
            if limit - len(data) < _GOOD_ENOUGH:
                break
        budget += limit - len(data)
    if best is not None:
        return best
    # Pathological shapes (thousands of tiny keys): keep a prefix of the outputs as text.
    # The error is capped at MAX_ERROR_BYTES, so this always leaves room for some text.
    text = _dumps(outcome.outputs).decode()
    wire[KEY_OUTPUTS] = {CUT_MARKER: _cut_string(text, limit - envelope - 32)}
    return _dumps(wire)
