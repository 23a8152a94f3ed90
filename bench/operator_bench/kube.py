"""The API over plain HTTPS with the admin client cert: raw calls, watches, run phases."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from localcluster import LocalCluster

from .common import API, JSON, TERMINAL, USER_AGENT


class Kube:
    """Raw JSON calls to the API server (no model decoding: the benchmark must stay light)."""

    def __init__(self, cluster: LocalCluster) -> None:
        certs = cluster.control_plane.certs
        if certs is None:
            raise RuntimeError("the cluster has no certificates yet")
        self.base = cluster.server_url
        self.tls = ssl.create_default_context(cafile=str(certs.ca.cert))
        self.tls.load_cert_chain(str(certs.admin.cert), str(certs.admin.key))
        self.http = self.client()

    def client(self, read_timeout: float | None = 60.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.base,
            verify=self.tls,
            timeout=httpx.Timeout(30.0, read=read_timeout),
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )

    def request(self, method: str, path: str, client: httpx.Client | None = None,
                **kwargs: Any) -> httpx.Response:
        """One call, retried while the API server says 429 (e.g. a fresh CRD's cache warming up)
        or is briefly unavailable."""
        deadline = time.monotonic() + 30
        while True:
            resp = (client or self.http).request(method, path, **kwargs)
            if resp.status_code not in (429, 503) or time.monotonic() > deadline:
                return resp
            time.sleep(min(1.0, float(resp.headers.get("Retry-After") or 0.2)))

    def get(self, path: str, **params: str) -> JSON:
        resp = self.request("GET", path, params=params)
        resp.raise_for_status()
        body: JSON = resp.json()
        return body

    def get_raw(self, path: str) -> bytes:
        resp = self.request("GET", path)
        resp.raise_for_status()
        return resp.content

    def exists(self, path: str) -> bool:
        resp = self.request("GET", path)
        if resp.status_code == 404:
            return False
        resp.raise_for_status()
        return True

    def post(self, path: str, body: JSON) -> JSON:
        resp = self.request("POST", path, json=body)
        if resp.status_code >= 400:
            raise RuntimeError(f"POST {path}: {resp.status_code} {resp.text[:500]}")
        result: JSON = resp.json()
        return result

    def namespace(self, name: str) -> None:
        self.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": name}})

    def workflow(self, ns: str, name: str, spec: JSON) -> None:
        self.post(f"{API}/namespaces/{ns}/workflows",
                  {"apiVersion": "taskforge.io/v1alpha1", "kind": "Workflow",
                   "metadata": {"name": name}, "spec": spec})

    def create_run(self, ns: str, name: str, workflow: str) -> None:
        self.post(f"{API}/namespaces/{ns}/workflowruns",
                  {"apiVersion": "taskforge.io/v1alpha1", "kind": "WorkflowRun",
                   "metadata": {"name": name}, "spec": {"workflowRef": {"name": workflow}}})

    def create_runs(self, ns: str, workflow: str, names: list[str],
                    threads: int = 4, pace: float | None = None) -> dict[str, float]:
        """Create runs from `threads` concurrent creators; the monotonic time of each create.
        `pace` (runs a second): the i-th run is created no sooner than i / pace s in."""
        created: dict[str, float] = {}
        start = time.monotonic()

        def one(item: tuple[int, str]) -> None:
            index, name = item
            if pace:
                time.sleep(max(0.0, start + index / pace - time.monotonic()))
            created[name] = time.monotonic()
            self.create_run(ns, name, workflow)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, enumerate(names)))
        return created

    def metrics(self) -> str:
        resp = self.request("GET", "/metrics")
        resp.raise_for_status()
        return resp.text


# --- watches -------------------------------------------------------------------------------------


Handler = Callable[[float, str, JSON], None]


class Watch:
    """A list+watch of one collection in a thread; `handler(monotonic_time, type, object)`.

    The time is taken when the event's line arrives, before it is decoded.
    """

    def __init__(self, kube: Kube, path: str, handler: Handler) -> None:
        self.kube = kube
        self.path = path
        self.handler = handler
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._resp: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch {path}", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Watch:
        self._thread.start()
        if not self.ready.wait(15):
            raise RuntimeError(f"watch on {self.path} did not start: {self.error!r}")
        return self

    def __exit__(self, *_: object) -> None:
        """Stop: shut the socket down under the reading thread, which then closes it.

        Closing it from here instead would free the file descriptor while the reader is still
        blocked on it; the next connection could get the same number and the old reader would
        eat its TLS records.
        """
        self._stop.set()
        resp = self._resp
        with contextlib.suppress(Exception):
            stream = resp.extensions.get("network_stream") if resp is not None else None
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        self._thread.join(5)

    def _list(self, client: httpx.Client) -> str:
        resp = self.kube.request("GET", self.path, client)
        resp.raise_for_status()
        body = resp.json()
        now = time.monotonic()
        for item in body.get("items") or []:
            self.handler(now, "ADDED", item)
        return str(body["metadata"]["resourceVersion"])

    def _stream(self, client: httpx.Client, rv: str) -> str | None:
        """Watch from `rv` until the server ends the stream; where to resume (None: list)."""
        params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true",
                  "timeoutSeconds": "600"}
        with client.stream("GET", self.path, params=params) as resp:
            if resp.status_code == 410:
                return None
            if resp.status_code in (429, 503):
                time.sleep(0.2)
                return rv
            resp.raise_for_status()
            self._resp = resp
            self.ready.set()
            for line in resp.iter_lines():
                if not line:
                    continue
                now = time.monotonic()
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":  # 410 Gone inside the stream
                    return None
                rv = obj["metadata"]["resourceVersion"]
                if kind != "BOOKMARK":
                    self.handler(now, kind, obj)
        return rv

    def _run(self) -> None:
        client = self.kube.client(read_timeout=None)
        rv: str | None = None
        try:
            while not self._stop.is_set():
                try:
                    if rv is None:
                        rv = self._list(client)
                    rv = self._stream(client, rv)
                except Exception as exc:
                    if self._stop.is_set():
                        break
                    self.error = exc
                    print(f"watch {self.path}: {exc!r}; reconnecting", file=sys.stderr)
                    time.sleep(0.2)
        finally:
            client.close()


class RunTracker:
    """Phases of the runs in one namespace, fed by a watch."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.phase: dict[str, str] = {}
        self.finished_at: dict[str, float] = {}

    def handle(self, now: float, kind: str, obj: JSON) -> None:
        name = obj["metadata"]["name"]
        phase = (obj.get("status") or {}).get("phase") or "Pending"
        with self.cond:
            if kind == "DELETED":
                self.phase.pop(name, None)
            else:
                self.phase[name] = phase
                if phase in TERMINAL and name not in self.finished_at:
                    self.finished_at[name] = now
            self.cond.notify_all()

    def count(self, *phases: str) -> int:
        with self.cond:
            return sum(1 for p in self.phase.values() if p in phases)

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def wait_finished(self, names: Iterable[str], timeout: float) -> bool:
        wanted = set(names)
        return self.wait(lambda: wanted <= self.finished_at.keys(), timeout)
