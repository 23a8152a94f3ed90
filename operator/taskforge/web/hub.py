"""One Kubernetes watch per resource kind, fanned out to every live viewer.

A viewer (an SSE stream of a run page or a runs list) subscribes with a filter and a shape;
the hub keeps ONE watch per kind (cluster mode: all namespaces, with the server's identity;
local mode: one per namespace, since a kubeconfig user may not list cluster-wide) and, for
each watch event, renders each shape once and puts the same bytes into the queue of every
matching viewer. So 50 viewers of a run cost one watch and one rendering per change, never a
request per viewer (issue 17: no polling of the API server per viewer).

Memory is bounded: each viewer's queue holds at most `queue_size` messages and at most
`queue_bytes` of them (references to the shared bytes, each counted in full: a 1,000-step
run's message is hundreds of KiB, so 256 of them could pin 100 MiB for one stuck viewer).
A viewer that falls that far behind is dropped: its queue is emptied and
it gets a RESET, so the browser's EventSource reconnects and starts from a fresh snapshot.
When the watch breaks (the API server ends it, or its resourceVersion is too old: 410), the
hub lists the current resourceVersion again and tells every viewer to RESYNC (send a new
snapshot), since events in the gap are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from taskforge import GROUP, VERSION
from taskforge.web.kubeapi import KubeApi, KubeError
from taskforge.web.state import crd_path

log = logging.getLogger("taskforge.web.hub")

RESET = b"reset"  # the viewer fell behind: close, the client reconnects
RESYNC = b"resync"  # the watch had a gap: send a new snapshot



@dataclass(frozen=True, eq=False)
class Update:
    """One watch event of a run, for its run-page viewers."""

    base: int  # the resourceVersion `changes` is relative to
    changes: bytes  # the changes since `base` (see web/delta.py)
    full: bytes  # the whole shape, for a viewer not at `base`

    @property
    def size(self) -> int:
        """Bytes a viewer's queue pins with this message (both parts)."""
        return len(self.changes) + len(self.full)

    def for_viewer(self, seen: int) -> bytes:
        """The changes for a viewer whose last version is `base`, else the whole shape."""
        return self.changes if seen and seen == self.base else self.full


# (name, resourceVersion as int or 0, encoded SSE message or Update) or a marker
Message = tuple[str, int, bytes | Update] | bytes
Renderer = Callable[[str, dict[str, Any]], bytes | Update]


def message_size(msg: Message) -> int:
    data = msg[2] if isinstance(msg, tuple) else msg
    return data.size if isinstance(data, Update) else len(data)

REGISTRY = CollectorRegistry()
WATCHES = Gauge("taskforge_ui_kube_watches", "Kubernetes watches open (one per kind and scope)",
                ["kind"], registry=REGISTRY)
WATCH_STARTS = Counter("taskforge_ui_kube_watch_requests", "Watch requests sent to the API"
                       " server", ["kind"], registry=REGISTRY)
VIEWERS = Gauge("taskforge_ui_viewers", "Live (SSE) viewers connected", registry=REGISTRY)
DROPPED = Counter("taskforge_ui_viewers_dropped", "Viewers dropped for falling behind",
                  registry=REGISTRY)


def resource_version(obj: dict[str, Any]) -> int:
    rv = (obj.get("metadata") or {}).get("resourceVersion") or "0"
    return int(rv) if str(rv).isdigit() else 0


Match = Callable[[dict[str, Any]], bool]


@dataclass(eq=False)
class Subscriber:
    match: Callable[[dict[str, Any]], bool]
    shape: str
    queue: asyncio.Queue[Message]
    dropped: bool = False
    queued_bytes: int = 0  # what the messages waiting in `queue` weigh (shared bytes counted)
    # other kinds this viewer hears on the same queue (a run page: its Events), by plural:
    # (scope, shape, match); their messages are named "plural/name"
    also: dict[str, tuple[str, str, Match]] = field(default_factory=dict)

    def interest(self, plural: str) -> tuple[str, Match] | None:
        """(shape, match) for events of `plural`, None for the primary kind."""
        extra = self.also.get(plural)
        return None if extra is None else (extra[1], extra[2])

    async def get(self) -> Message:
        """The next message for this viewer (what the SSE stream calls)."""
        msg = await self.queue.get()
        self.queued_bytes -= message_size(msg)
        return msg


@dataclass(eq=False)
class Feed:
    """One watch of one kind in one scope (namespace, or "" for all)."""

    plural: str
    namespace: str
    path: str
    subscribers: set[Subscriber] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    listed: bool = False  # a list was made before: another one means a gap (RESYNC)


class Hub:
    def __init__(self, kube: KubeApi, renderers: dict[str, Renderer], *, per_namespace: bool,
                 queue_size: int = 256, queue_bytes: int = 16 << 20) -> None:
        self.kube = kube
        self.renderers = renderers
        self.per_namespace = per_namespace
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.feeds: dict[tuple[str, str], Feed] = {}

    def _feed(self, plural: str, namespace: str) -> Feed:
        """The feed of `plural` for a viewer in `namespace`, its watch started if need be."""
        scope = namespace if self.per_namespace else ""
        feed = self.feeds.get((plural, scope))
        if feed is None:
            feed = self.feeds[(plural, scope)] = Feed(plural, scope, _path(plural, scope))
        if feed.task is None or feed.task.done():
            feed.listed = False
            feed.task = asyncio.create_task(self._run(feed), name=f"watch {plural} {scope}")
        return feed

    def subscribe(self, plural: str, namespace: str, shape: str,
                  match: Callable[[dict[str, Any]], bool]) -> Subscriber:
        sub = Subscriber(match, shape, asyncio.Queue(self.queue_size))
        self._feed(plural, namespace).subscribers.add(sub)
        VIEWERS.inc()
        return sub

    def also(self, sub: Subscriber, plural: str, namespace: str, shape: str,
             match: Match) -> None:
        """Let `sub` hear `plural` too, on its own queue (one watch of that kind for all)."""
        sub.also[plural] = (namespace, shape, match)
        self._feed(plural, namespace).subscribers.add(sub)

    def unsubscribe(self, plural: str, namespace: str, sub: Subscriber) -> None:
        feed = self.feeds.get((plural, namespace if self.per_namespace else ""))
        if feed is not None and sub in feed.subscribers:
            feed.subscribers.discard(sub)
            VIEWERS.dec()
        for other, (scope, _, _) in sub.also.items():
            extra = self.feeds.get((other, scope if self.per_namespace else ""))
            if extra is None:
                continue
            extra.subscribers.discard(sub)
            if other in STOP_WHEN_IDLE and not extra.subscribers and extra.task is not None:
                extra.task.cancel()  # nobody looks: do not decode the cluster's Events
                extra.task = None

    def watches(self) -> int:
        return sum(1 for f in self.feeds.values() if f.task is not None and not f.task.done())

    async def _run(self, feed: Feed) -> None:
        """List the current resourceVersion and watch from it. A watch the API server ends
        on schedule resumes from the last version seen (bookmarks keep it fresh), so nothing
        is lost and viewers hear nothing; only a broken one (410 Gone, an error) lists again
        and tells every viewer to RESYNC."""
        rv = ""
        while True:
            try:
                if not rv:
                    listed = await self.kube.request("GET", feed.path, query={"limit": "1"})
                    rv = str((listed.get("metadata") or {}).get("resourceVersion") or "")
                    if feed.listed:
                        self._broadcast(feed, RESYNC)
                    feed.listed = True
                WATCHES.labels(feed.plural).inc()
                WATCH_STARTS.labels(feed.plural).inc()
                try:
                    rv = await self._watch(feed, rv)
                finally:
                    WATCHES.labels(feed.plural).dec()
            except asyncio.CancelledError:
                raise
            except (KubeError, OSError, TimeoutError, ValueError) as exc:
                log.warning("watch of %s broke: %s", feed.plural, exc)
                rv = ""
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("watch of %s failed", feed.plural)
                rv = ""
                await asyncio.sleep(1.0)

    async def _watch(self, feed: Feed, rv: str) -> str:
        """Dispatch one watch request's events; the last resourceVersion seen."""
        query = {"resourceVersion": rv, "timeoutSeconds": "300"}
        async for event in self.kube.watch(feed.path, query=query):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                raise KubeError(int(obj.get("code") or 500), str(obj.get("reason") or ""),
                                str(obj.get("message") or ""))
            rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
            if kind != "BOOKMARK":
                self._dispatch(feed, str(kind), obj)
        return rv

    def _dispatch(self, feed: Feed, kind: str, obj: dict[str, Any]) -> None:
        rendered: dict[str, bytes | Update] = {}
        name = str((obj.get("metadata") or {}).get("name") or "")
        rv = resource_version(obj)
        for sub in list(feed.subscribers):
            extra = sub.interest(feed.plural)
            shape, match = extra if extra is not None else (sub.shape, sub.match)
            try:
                if not match(obj):
                    continue
                data = rendered.get(shape)
                if data is None:
                    data = rendered[shape] = self.renderers[shape](kind, obj)
            except Exception:
                log.exception("rendering %s %s for a viewer failed", feed.plural, name)
                continue
            # another kind's message is named by kind too (names of two kinds may be equal)
            self._put(sub, (name if extra is None else f"{feed.plural}/{name}", rv, data))

    def _broadcast(self, feed: Feed, marker: bytes) -> None:
        for sub in list(feed.subscribers):
            self._put(sub, marker)

    def _put(self, sub: Subscriber, msg: Message) -> None:
        """Queue `msg` for `sub`, or drop the viewer when it is `queue_size` messages or
        `queue_bytes` behind (one message is always taken into an empty queue, so a run
        bigger than the byte bound can still be watched by a viewer that keeps up)."""
        if sub.dropped:
            return
        size = message_size(msg)
        if sub.queue.empty() or sub.queued_bytes + size <= self.queue_bytes:
            try:
                sub.queue.put_nowait(msg)
                sub.queued_bytes += size
                return
            except asyncio.QueueFull:
                pass
        sub.dropped = True
        DROPPED.inc()
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queued_bytes = 0
        sub.queue.put_nowait(RESET)

    async def close(self) -> None:
        for feed in self.feeds.values():
            if feed.task is not None:
                feed.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await feed.task


# Kinds whose watch stops when its last viewer leaves: the cluster's Events are many, and
# decoding them for nobody would be the server's main work when idle.
STOP_WHEN_IDLE = frozenset({"events"})


def _path(plural: str, scope: str) -> str:
    """The list/watch path of one kind: core Events, else our CRDs; all namespaces or one."""
    if plural == "events":
        return f"/api/v1/namespaces/{scope}/events" if scope else "/api/v1/events"
    return crd_path(scope, plural) if scope else f"/apis/{GROUP}/{VERSION}/{plural}"


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event; JSON on one `data:` line (JSON never holds a raw newline).

    Encoded by orjson (a 1,000-step run's detail: 0.2 ms of CPU instead of 3.5, on the path
    of every update to its viewers), by the stdlib for what orjson refuses (integers past
    64 bits, which the API server never sends)."""
    try:
        body = orjson.dumps(data)
    except TypeError:
        body = json.dumps(data, separators=(",", ":")).encode()
    return b"event: " + event.encode() + b"\ndata: " + body + b"\n\n"
