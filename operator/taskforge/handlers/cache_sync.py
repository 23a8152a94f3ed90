""""Cache synced": every watched kind listed, and each listed object handed to our handlers.

This is what readiness means (client-go's `HasSynced`): a replica whose cache is not full
would answer a webhook delivery for an existing Workflow with 404, and a new leader would
catch up on only part of the runs. The leader candidate therefore campaigns only once the
cache is synced, and /readyz reports it.

kopf has no public signal for it: it lists each resource, yields a private `LISTED`
bookmark to its own watcher, and hands objects to handlers in per-object tasks, later.
kopf's index handlers would gate on the listing, but they run for every event of every
object (a cost on the hot path, issue 14), so instead `install()` wraps kopf's one stream
function, `kopf._cogs.clients.watching.infinite_watch` (used only by its watcher), passing
everything through and noting per stream which objects the initial listing held and when it
ended. Our handlers call `seen()` for each object they get, whatever the event type (a
listed object deleted before its turn arrives as DELETED), and the cache is synced when
every stream of the four kinds has listed and no listed object is still on its way.
`tests/unit/test_leadership.py` fails if a kopf upgrade moves that function.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from taskforge import GROUP
from taskforge.adapters import metrics

log = logging.getLogger("taskforge.cache")

LABEL_RUN = "taskforge.io/run"
KINDS: dict[tuple[str, str], bool] = {
    (GROUP, "workflowruns"): False,  # kind -> only objects with the run label are ours
    (GROUP, "workflows"): False,
    ("batch", "jobs"): True,
    ("", "pods"): True,
}


class CacheSync:
    """Which watch streams have finished listing, and which listed objects are pending."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, str, str | None], bool] = {}
        self.pending: set[tuple[str, str]] = set()
        self.synced = False
        self._listeners: list[Callable[[], None]] = []

    def on_synced(self, callback: Callable[[], None]) -> None:
        if self.synced:
            callback()
        else:
            self._listeners.append(callback)

    def force(self, why: str) -> None:
        """Count the cache as synced without having seen it (no hook into kopf)."""
        log.warning("readiness does not wait for the cache: %s", why)
        self.pending.clear()
        self.synced = True
        for callback in self._listeners:
            callback()
        self._listeners.clear()

    def begin(self, group: str, plural: str, namespace: str | None) -> None:
        self.streams.setdefault((group, plural, namespace), False)

    def listed_object(self, group: str, plural: str, body: dict[str, Any]) -> None:
        """One object of an initial listing: pending until a handler has seen it."""
        if self.synced or (group, plural) not in KINDS:
            return
        meta = body.get("metadata") or {}
        if KINDS[(group, plural)] and LABEL_RUN not in (meta.get("labels") or {}):
            return  # our handler filters it out: it will never be seen
        uid = meta.get("uid")
        if uid:
            self.pending.add((plural, str(uid)))

    def listed(self, group: str, plural: str, namespace: str | None) -> None:
        self.streams[(group, plural, namespace)] = True
        self._check()

    def seen(self, plural: str, body: dict[str, Any]) -> None:
        """A handler got this object (any event type)."""
        if self.synced:
            return
        uid = (body.get("metadata") or {}).get("uid")
        if uid:
            self.pending.discard((plural, str(uid)))
        self._check()

    def _check(self) -> None:
        if self.synced or self.pending:
            return
        kinds = {(g, p) for (g, p, _), done in self.streams.items()}
        if kinds >= set(KINDS) and all(
            done for (g, p, _), done in self.streams.items() if (g, p) in KINDS
        ):
            self.synced = True
            log.info("cache synced: %d watch streams listed", len(self.streams))
            for callback in self._listeners:
                callback()
            self._listeners.clear()


TRACKER = CacheSync()


def is_synced() -> bool:
    return TRACKER.synced


Direct = Mapping[tuple[str, str], Callable[[Mapping[str, Any]], None]]


def _wrap(original: Callable[..., AsyncIterator[Any]], tracker: CacheSync,
          listed_marker: Any, direct: Direct | None = None) -> Callable[..., AsyncIterator[Any]]:
    """kopf's stream, noting the listing; a kind in `direct` has its events handed to that
    function here, in order, and not passed on to kopf's per-event processing
    (registration.py says why)."""
    async def infinite_watch(**kwargs: Any) -> AsyncIterator[Any]:
        resource, namespace = kwargs.get("resource"), kwargs.get("namespace")
        group, plural = str(getattr(resource, "group", "")), str(getattr(resource, "plural", ""))
        tracker.begin(group, plural, namespace)
        counter = metrics.WATCH_EVENTS.labels(plural)  # one child per stream, not per event
        handler = (direct or {}).get((group, plural))
        async for event in original(**kwargs):
            counter.inc()
            if event is listed_marker:
                tracker.listed(group, plural, namespace)
            elif isinstance(event, dict):
                if event.get("type") is None and not tracker.synced:
                    tracker.listed_object(group, plural, event.get("object") or {})
                if handler is not None:
                    if event.get("type") == "BOOKMARK":
                        continue  # no object, only a resourceVersion (kopf's stream keeps it)
                    try:
                        handler(event)
                    except Exception:  # one bad event must not end the stream
                        log.exception("handling a %s watch event failed", plural)
                    continue
            yield event

    infinite_watch.__wrapped__ = original  # type: ignore[attr-defined]
    return infinite_watch


def install(tracker: CacheSync = TRACKER, direct: Direct | None = None) -> bool:
    """Hook the tracker (and the direct handlers) into kopf's watch streams (once); False if
    kopf has no such hook."""
    try:
        from kopf._cogs.clients import watching  # noqa: PLC0415 - private, see the docstring
    except ImportError:
        return False
    current = getattr(watching, "infinite_watch", None)
    marker = getattr(getattr(watching, "Bookmark", None), "LISTED", None)
    if current is None or marker is None:
        return False
    if getattr(current, "__wrapped__", None) is None:
        watching.infinite_watch = _wrap(current, tracker, marker, direct)
    return True
