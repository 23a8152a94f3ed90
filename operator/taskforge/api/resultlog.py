"""Step results larger than the termination message: limits, the log format, per-key summaries.

Shared by the executor (which writes a result) and the operator (which reads, stores and
summarizes it), so the format and the limits cannot drift. Stdlib only: the executor
imports it before it knows which libraries its step needs.

Why the pod log. A step pod has no RBAC and no API token, so it can hand the operator a
result only through what the kubelet reports: the termination message (at most 4 KiB) or
the container log, which the operator may read (`pods/log get`). Tekton's "results from
sidecar logs" uses the same channel. A result that does not fit the termination message is
printed as the last lines of the log, base64 in lines of at most `LOG_LINE_CHARS`
characters (far under the 16 KiB at which container runtimes split a log line, so
`tailLines` counts our lines exactly), and the termination message says how many lines to
read and the SHA-256 to check them against. The operator copies the result into a ConfigMap
owned by the run before it acknowledges the step in status, so a result outlives the pod
(Job TTL) and an operator restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Final

MAX_RESULT_BYTES: Final = 1024 * 1024
"""A step's outputs as compact UTF-8 JSON: at most 1 MiB; more fails the step."""

KEY_RESULT_LOG: Final = "resultLog"
"""Termination-message key: `{"size", "sha256", "lines"}` of a result printed to the log."""

TRUNCATED_KEY: Final = "_truncated"
"""Outputs key marking per-key truncation: `{"key": true size in bytes, ...}`. A key listed
here was left out of this copy of the outputs (status, termination message) because it did
not fit; the whole result is in the run's result store."""

MORE_KEYS: Final = "…"
"""Inside TRUNCATED_KEY: how many more keys were left out than the map itself could name."""

LOG_PREFIX: Final = "::taskforge-result:"
LOG_LINE_CHARS: Final = 8192
"""Base64 characters per log line (6 KiB of result)."""
_RAW_PER_LINE: Final = LOG_LINE_CHARS // 4 * 3
LOG_SLACK_LINES: Final = 32
"""Lines the operator reads beyond the result's own: output that lands after it (stderr of
a child still exiting) must not push the result out of the window."""
LOG_MAX_FOREIGN_LINE: Final = 16 * 1024
"""Container runtimes split log lines at 16 KiB: the most one foreign line can add."""


def compact(value: Any) -> bytes:
    """The canonical size of a result or a value: compact UTF-8 JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def log_lines(data: bytes) -> list[str]:
    """The lines that carry `data` in the log: `<prefix><sha256>:<i>/<n>:<base64>`."""
    sha = digest(data)
    chunks = [data[i : i + _RAW_PER_LINE] for i in range(0, len(data), _RAW_PER_LINE)] or [b""]
    n = len(chunks)
    return [
        f"{LOG_PREFIX}{sha}:{i}/{n}:{base64.b64encode(c).decode()}" for i, c in enumerate(chunks)
    ]


def log_ref(data: bytes) -> dict[str, Any]:
    """What the termination message says about a result printed to the log."""
    return {"size": len(data), "sha256": digest(data), "lines": len(log_lines(data))}


def log_read_window(lines: int) -> tuple[int, int]:
    """(tailLines, limitBytes) that always contain `lines` result lines and bound the read."""
    own = lines * (len(LOG_PREFIX) + 64 + 24 + LOG_LINE_CHARS + 1)
    return lines + LOG_SLACK_LINES, own + LOG_SLACK_LINES * LOG_MAX_FOREIGN_LINE


class ResultLogError(ValueError):
    """The log does not hold the result the termination message announced."""


def parse_log(text: bytes, *, size: int, sha256: str, lines: int) -> bytes:
    """The result announced by `(size, sha256, lines)`, found in the tail of a pod log."""
    if size > MAX_RESULT_BYTES:
        raise ResultLogError(f"the result is {size:,} bytes, over the limit of"
                             f" {MAX_RESULT_BYTES:,} bytes")
    head = f"{LOG_PREFIX}{sha256}:".encode()
    parts: dict[int, bytes] = {}
    for raw in text.split(b"\n"):
        line = raw.rstrip(b"\r")
        start = line.find(head)
        if start < 0:
            continue
        index, _, rest = line[start + len(head):].partition(b"/")
        count, _, payload = rest.partition(b":")
        if not index.isdigit() or count != str(lines).encode():
            continue
        try:
            parts[int(index)] = base64.b64decode(payload, validate=True)
        except ValueError:
            continue
    missing = [i for i in range(lines) if i not in parts]
    if missing:
        raise ResultLogError(f"{len(missing)} of the result's {lines} log lines are missing")
    data = b"".join(parts[i] for i in range(lines))
    if len(data) != size or digest(data) != sha256:
        raise ResultLogError("the result in the log does not match its size and SHA-256")
    return data


def summarize(outputs: dict[str, Any], budget: int) -> dict[str, Any]:
    """`outputs` as is when its JSON fits `budget` bytes, else per key: the smallest keys
    whole, in their order, while they fit, and the rest named in TRUNCATED_KEY with their
    true size. Nothing is cut mid-value, so whatever a reader finds is exact."""
    if len(compact(outputs)) <= budget:
        return outputs
    sizes = {k: len(compact(v)) for k, v in outputs.items() if k != TRUNCATED_KEY}
    earlier = outputs.get(TRUNCATED_KEY)
    marker: dict[str, Any] = dict(earlier) if isinstance(earlier, dict) else {}
    # Start from "every key cut" and keep keys, smallest first, while the estimate fits.
    used = len(compact({TRUNCATED_KEY: {**marker, **sizes}}))
    kept: list[str] = []
    for key in sorted(sizes, key=lambda k: sizes[k]):
        grows = sizes[key] - len(str(sizes[key]))
        if used + grows > budget:
            break
        used += grows
        kept.append(key)
    out = {k: v for k, v in outputs.items() if k in set(kept)}
    marker.update((k, s) for k, s in sizes.items() if k not in out)
    out[TRUNCATED_KEY] = marker
    while len(compact(out)) > budget and kept:  # the estimate missed (escapes): cut more
        key = kept.pop()
        del out[key]
        marker[key] = sizes[key]
    while len(compact(out)) > budget and len(marker) > 1:
        # Thousands of keys: the marker itself must be cut; it says how many it dropped.
        more = int(marker.pop(MORE_KEYS, 0))
        names = [k for k in marker]
        drop = max(len(names) // 2, 1)
        for k in names[-drop:]:
            del marker[k]
        marker[MORE_KEYS] = more + drop
    return out


def truncated_keys(outputs: dict[str, Any] | None) -> dict[str, int]:
    """The keys a summary left out, with their true sizes (MORE_KEYS excluded)."""
    marker = (outputs or {}).get(TRUNCATED_KEY)
    if not isinstance(marker, dict):
        return {}
    return {
        str(k): int(v)
        for k, v in marker.items()
        if k != MORE_KEYS and isinstance(v, int) and not isinstance(v, bool)
    }
