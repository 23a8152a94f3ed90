"""The local node agent: the kubelet's (and the scheduler's) stand-in for one node.

It registers a Ready Node and keeps its Lease fresh, binds every unscheduled
pod to that node, and hands each bound pod to a ``PodWorker`` that runs its
containers as local processes (see ``podworker.py`` and ``images.py``).

One watch on all pods drives everything. The watch thread only routes events;
API calls happen in a small thread pool and in the workers, so a burst of pods
(the operator benchmark wants >= 10 pods/s) never waits behind one slow call.
When the apiserver goes away the watch reconnects with backoff and resumes from
its last resourceVersion (a full re-list only on 410 Gone), so the agent rides
out an apiserver restart without losing a pod.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from localcluster.envvars import node_allocatable
from localcluster.images import ImageMap
from localcluster.kubeapi import ApiError, KubeAPI, pod_path
from localcluster.logserver import LogServer, LogStore
from localcluster.node import KubeObjects, NodeRegistration, path_dirs, probe_mount_namespaces
from localcluster.podstatus import now
from localcluster.podworker import AGENT_STOPPED, NodeContext, PodWorker, finalize

log = logging.getLogger("localcluster.agent")
JSON = dict[str, Any]


class Agent:
    """Binds pods to this node, starts a worker per bound pod, and routes watch events."""

    def __init__(
        self,
        kube: KubeAPI,
        *,
        node_name: str,
        state_dir: Path,
        images: ImageMap,
        log_server: LogServer,
        store: LogStore,
    ) -> None:
        self.kube = kube
        self.node_name = node_name
        self.state_dir = state_dir
        self.log_server = log_server
        self.allocatable = node_allocatable()
        self.ctx = NodeContext(
            kube=kube, node_name=node_name, images=images, logs=store,
            objects=KubeObjects(kube), allocatable=self.allocatable,
            path_dirs=path_dirs(state_dir), mount_namespaces=probe_mount_namespaces(state_dir),
        )
        self.node = NodeRegistration(kube, node_name, log_server.port, self.allocatable)
        self.workers: dict[str, PodWorker] = {}
        self._pending: set[str] = set()  # uids with a bind or finalize under way
        self._latest: dict[str, tuple[str, JSON]] = {}  # events seen while pending
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="agent")
        self._stop = threading.Event()

    # -- pods ------------------------------------------------------------------------

    def run(self, ready_file: Path | None = None) -> None:
        # The launcher starts the agent while the apiserver is still warming up.
        self._with_retries(self.node.register, also=(401, 403))
        threading.Thread(target=self.node.lease_loop, args=(self._stop,), name="lease",
                         daemon=True).start()
        resource_version = self._with_retries(self._relist, also=(401, 403))
        if ready_file is not None:
            ready_file.write_text(json.dumps({"pid": os.getpid(), "port": self.log_server.port}))
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist()
                resource_version = self._watch(resource_version)
                backoff = 0.5
            except ApiError as exc:
                if exc.status == 410:
                    resource_version = None
                    continue
                log.warning("pod watch failed (%s), retrying in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.stop(AGENT_STOPPED, 0)

    def _relist(self) -> str:
        items: list[JSON] = []
        cont = None
        while True:
            page = self.kube.get("/api/v1/pods", limit=500, **({"continue": cont} if cont else {}))
            items += page.get("items") or []
            cont = page["metadata"].get("continue")
            if not cont:
                break
        listed = set()
        for pod in items:
            listed.add(pod["metadata"]["uid"])
            self._handle("ADDED", pod)
        with self._lock:
            vanished = [w for uid, w in self.workers.items() if uid not in listed]
        for worker in vanished:
            self._handle("DELETED", worker.pod)
        return str(page["metadata"]["resourceVersion"])

    def _watch(self, resource_version: str) -> str:
        params = {"resourceVersion": resource_version, "allowWatchBookmarks": True,
                  "timeoutSeconds": 300}
        for event in self.kube.watch("/api/v1/pods", params, read_timeout=330):
            obj = event.get("object") or {}
            if event.get("type") == "ERROR":
                raise ApiError(int(obj.get("code", 500)), str(obj.get("message")), "WATCH")
            resource_version = obj["metadata"]["resourceVersion"]
            if event["type"] != "BOOKMARK":
                self._handle(event["type"], obj)
            if self._stop.is_set():
                break
        return resource_version

    def _handle(self, kind: str, pod: JSON) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        with self._lock:
            if uid in self._pending and uid not in self.workers:
                # A bind or adoption is in flight: it must not miss this newer version.
                self._latest[uid] = (kind, pod)
        if kind == "DELETED":
            with self._lock:
                worker = self.workers.pop(uid, None)
            if worker is not None:
                worker.gone()
            else:
                store = self.ctx.logs
                shutil.rmtree(store.pod_dir(meta["namespace"], meta["name"], uid),
                              ignore_errors=True)
            return
        node = spec.get("nodeName")
        if not node:
            if _wants_binding(pod) and self._claim(uid):
                self._pool.submit(self._bind, pod)
            return
        if node != self.node_name:
            return
        with self._lock:
            worker = self.workers.get(uid)
        if worker is None:
            if self._claim(uid):
                self._pool.submit(self._adopt, pod)
            return
        worker.update(pod)
        if (worker.done.is_set() and not worker.finalized and meta.get("deletionTimestamp")
                and self._claim(uid)):
            worker.finalized = True
            self._pool.submit(self._finalize, pod)

    def _claim(self, uid: str) -> bool:
        with self._lock:
            if uid in self._pending:
                return False
            self._pending.add(uid)
            return True

    def _release(self, uid: str) -> None:
        with self._lock:
            self._pending.discard(uid)
            self._latest.pop(uid, None)

    def _bind(self, pod: JSON) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self._with_retries(lambda: self.kube.post(
                pod_path(meta["namespace"], meta["name"], "binding"), body))
            log.info("pod %s/%s: bound to %s", meta["namespace"], meta["name"], self.node_name)
            pod["spec"]["nodeName"] = self.node_name
            self._start_worker(pod)
        except ApiError as exc:
            log.debug("pod %s/%s: not bound: %s", meta["namespace"], meta["name"], exc)
        finally:
            self._release(meta["uid"])

    def _adopt(self, pod: JSON) -> None:
        """A pod bound here that no worker of this agent process has seen yet."""
        uid = pod["metadata"]["uid"]
        try:
            phase = (pod.get("status") or {}).get("phase", "Pending")
            if phase in ("Succeeded", "Failed"):
                if pod["metadata"].get("deletionTimestamp"):
                    self._with_retries(lambda: finalize(self.kube, pod))
                return
            if _was_started(pod):
                self._mark_lost(pod)
                return
            self._start_worker(pod)
        except ApiError as exc:
            log.warning("pod %s: %s", pod["metadata"]["name"], exc)
        finally:
            self._release(uid)

    def _finalize(self, pod: JSON) -> None:
        try:
            self._with_retries(lambda: finalize(self.kube, pod))
            log.info("pod %s/%s: finalized", pod["metadata"]["namespace"], pod["metadata"]["name"])
        except ApiError as exc:
            log.warning("pod %s: finalize failed: %s", pod["metadata"]["name"], exc)
        finally:
            self._release(pod["metadata"]["uid"])

    def _start_worker(self, pod: JSON) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            if uid in self.workers:
                return
            kind, latest = self._latest.pop(uid, ("", None))
            if kind == "DELETED":
                return
            worker = PodWorker(self.ctx, pod)
            self.workers[uid] = worker
        if latest is not None and latest["spec"].get("nodeName") == self.node_name:
            worker.update(latest)  # e.g. deleted while we were binding it
        worker.start()

    def _mark_lost(self, pod: JSON) -> None:
        """Its process died with a previous agent process (PDEATHSIG): report it failed."""
        meta = pod["metadata"]
        message = "the local node agent restarted; the container's process was lost"
        statuses = []
        for old in (pod.get("status") or {}).get("containerStatuses") or []:
            new = old
            if "terminated" not in (old.get("state") or {}):
                new = {**old, "ready": False, "started": False, "state": {"terminated": {
                    "exitCode": 137, "reason": "ContainerStatusUnknown", "message": message,
                    "startedAt": now(), "finishedAt": now()}}}
            statuses.append(new)
        body = {"status": {"phase": "Failed", "reason": "LocalAgentRestarted",
                           "message": message, "containerStatuses": statuses}}
        self._with_retries(lambda: self.kube.merge_patch(
            pod_path(meta["namespace"], meta["name"], "status"), body))
        log.info("pod %s/%s: Failed (process lost with the previous agent)",
                 meta["namespace"], meta["name"])
        if meta.get("deletionTimestamp"):
            self._with_retries(lambda: finalize(self.kube, pod))

    def _with_retries(self, call: Any, budget: float = 120.0, also: tuple[int, ...] = ()) -> Any:
        """Retry transient failures (apiserver down or restarting) for ``budget`` seconds."""
        delay, deadline = 0.2, time.monotonic() + budget
        while True:
            try:
                return call()
            except ApiError as exc:
                # ``also``: e.g. 403 while RBAC is still bootstrapping after start-up
                transient = exc.status in (0, 429, *also) or exc.status >= 500
                if not transient or time.monotonic() > deadline or self._stop.is_set():
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _wants_binding(pod: JSON) -> bool:
    spec, meta = pod["spec"], pod["metadata"]
    phase = (pod.get("status") or {}).get("phase", "Pending")
    return (
        phase == "Pending"
        and not meta.get("deletionTimestamp")
        and spec.get("schedulerName", "default-scheduler") == "default-scheduler"
        and not spec.get("schedulingGates")
    )


def _was_started(pod: JSON) -> bool:
    status = pod.get("status") or {}
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = c.get("state") or {}
        if "running" in state or "terminated" in state or c.get("restartCount"):
            return True
    return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localcluster agent",
                                     description="local node agent (kubelet stand-in)")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node-name", default="local-node")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--tls-cert", type=Path, required=True, help="log server certificate")
    parser.add_argument("--tls-key", type=Path, required=True)
    parser.add_argument("--client-ca", type=Path, help="CA for the apiserver's client cert")
    parser.add_argument("--log-port", type=int, default=0)
    parser.add_argument("--image-config", type=Path, help="JSON/YAML image rules")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    store = LogStore(args.state_dir / "pods")
    server = LogServer(store, args.log_port, args.tls_cert, args.tls_key, args.client_ca)
    server.start()
    kube = KubeAPI(args.kubeconfig, pool_size=48, user_agent="taskforge-local-agent")
    agent = Agent(kube, node_name=args.node_name, state_dir=args.state_dir,
                  images=ImageMap.load(args.image_config), log_server=server, store=store)

    def on_signal(signum: int, _frame: object) -> None:
        agent.stop()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    try:
        agent.run(args.ready_file)
    except KeyboardInterrupt:
        agent.stop()
