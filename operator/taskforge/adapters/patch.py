"""JSON merge patches (RFC 7386) between two versions of a status.

Sending only what changed keeps a reconcile of a 1,000-step run to a few
hundred bytes on the wire instead of the whole pinned spec every time.
"""

from __future__ import annotations

from typing import Any


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `old` into `new` (keys gone from `new` become null)."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key, _MISSING)
        if before == value:
            continue
        if isinstance(value, dict) and isinstance(before, dict):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        else:
            patch[key] = value
    return patch


_MISSING = object()
