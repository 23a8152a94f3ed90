"""Watch events of our four kinds go straight from kopf's stream to our handlers (issue 14).

The hook (cache_sync._wrap with `direct`) must hand every event to the kind's handler in
order, pass kopf's own markers and other kinds' events on, keep noting the initial listing,
and survive a handler that raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from kopf._cogs.clients import watching
from taskforge.handlers import cache_sync
from taskforge.handlers.cache_sync import CacheSync


def _obj(uid: str) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "name": uid, "namespace": "ns"}}


class _Resource:
    def __init__(self, group: str, plural: str) -> None:
        self.group, self.plural = group, plural


def _collect(group: str, plural: str, events: list[Any], handled: list[str],
             tracker: CacheSync, *, fail_on: str | None = None) -> list[Any]:
    async def stream(**_: Any) -> AsyncIterator[Any]:
        for event in events:
            yield event

    def handler(event: Mapping[str, Any]) -> None:
        uid = event["object"]["metadata"].get("uid", "-")
        if uid == fail_on:
            raise RuntimeError("a broken event")
        tracker.seen(plural, event["object"])
        handled.append(f"{event['type']}:{uid}")

    wrapped = cache_sync._wrap(stream, tracker, watching.Bookmark.LISTED,
                               {("taskforge.io", "workflows"): handler})

    async def run() -> list[Any]:
        return [e async for e in wrapped(resource=_Resource(group, plural), namespace=None)]

    return asyncio.run(run())


def test_direct_kind_is_handled_in_order_and_not_passed_to_kopf() -> None:
    tracker, handled = CacheSync(), list[str]()
    passed = _collect("taskforge.io", "workflows", [
        {"type": None, "object": _obj("w1")},
        watching.Bookmark.LISTED,
        {"type": "ADDED", "object": _obj("w2")},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}},
        {"type": "DELETED", "object": _obj("w1")},
    ], handled, tracker)
    assert passed == [watching.Bookmark.LISTED]  # kopf still learns the listing ended
    assert handled == ["None:w1", "ADDED:w2", "DELETED:w1"]  # a BOOKMARK has no object
    assert tracker.streams == {("taskforge.io", "workflows", None): True}
    assert not tracker.pending  # the listed object was seen by its handler


def test_other_kinds_pass_through_to_kopf() -> None:
    tracker, handled = CacheSync(), list[str]()
    events = [{"type": "ADDED", "object": _obj("c1")}, watching.Bookmark.LISTED]
    assert _collect("", "configmaps", events, handled, tracker) == events
    assert handled == []


def test_a_failing_handler_does_not_end_the_stream() -> None:
    tracker, handled = CacheSync(), list[str]()
    _collect("taskforge.io", "workflows", [
        {"type": "ADDED", "object": _obj("bad")},
        {"type": "ADDED", "object": _obj("good")},
    ], handled, tracker, fail_on="bad")
    assert handled == ["ADDED:good"]
