"""One pod's life on the local node: start its containers as processes, report, clean up.

A ``PodWorker`` owns one bound pod, in a thread of its own (a container may run
for hours; the agent's event loop must never wait on it). Init containers run
first, then the containers, one after the other: there is no sandbox to share,
and a Job's pod has one container in practice. Restart policy, the pod's
``activeDeadlineSeconds`` and graceful deletion follow the kubelet.

A process is started through ``_shim.py`` (see there for why), in its own
process group, so that a kill reaches whatever it forked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from localcluster.envvars import EnvError, ObjectSource, container_env, expand
from localcluster.images import CANNOT_RUN_REASON, CannotRunImageError, ImageMap
from localcluster.kubeapi import ApiError, KubeAPI, pod_path
from localcluster.logserver import LogStore, pump, timestamp
from localcluster.podstatus import ContainerStatus, PodStatusModel
from localcluster.volumes import VolumeError, container_mounts

log = logging.getLogger("localcluster.agent")
JSON = dict[str, Any]
T = TypeVar("T")
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
TERMINATION_ENV = "TASKFORGE_TERMINATION_MESSAGE_PATH"
SHIM = Path(__file__).with_name("_shim.py")
AGENT_STOPPED = "AgentStopped"


@dataclass
class NodeContext:
    """What every worker shares: API access, image rules, paths and node facts."""

    kube: KubeAPI
    node_name: str
    images: ImageMap
    logs: LogStore
    objects: ObjectSource
    allocatable: dict[str, str]
    path_dirs: dict[str, str]  # placeholders for ImageRule.path_prepend
    mount_namespaces: bool
    restart_backoff: float = 1.0


class PodGoneError(Exception):
    """The pod object no longer exists; nothing left to report."""


class PodWorker:
    def __init__(self, ctx: NodeContext, pod: JSON) -> None:
        self.ctx = ctx
        self.pod = pod
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.key = f"{self.namespace}/{self.name}"
        self.status = PodStatusModel.for_pod(pod)
        self.dir = ctx.logs.pod_dir(self.namespace, self.name, self.uid)
        self.done = threading.Event()
        self.finalized = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._stop_reason: str | None = None
        self._gone = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._kill_timer: threading.Timer | None = None

    # -- called from the agent's threads --------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._main, name=f"pod-{self.key}", daemon=True).start()

    def update(self, pod: JSON) -> None:
        """A newer version of the pod from the watch: react to graceful deletion."""
        self.pod = pod
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            self.stop("Deleted", float(grace))

    def gone(self) -> None:
        """The pod object is deleted: kill at once, report nothing, remove its files."""
        self._gone = True
        self.stop("Deleted", 0)
        if self.done.is_set():
            shutil.rmtree(self.dir, ignore_errors=True)

    def stop(self, reason: str, grace: float) -> None:
        """SIGTERM the running process now, SIGKILL it after ``grace`` seconds."""
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason
            self._stopping.set()
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return
            if grace <= 0:
                _kill_group(proc.pid, signal.SIGKILL)
                return
            if self._kill_timer is not None:
                return
            log.info("pod %s: terminating (%s), grace %.0fs", self.key, reason, grace)
            _kill_group(proc.pid, signal.SIGTERM)
            self._kill_timer = threading.Timer(grace, _kill_group, (proc.pid, signal.SIGKILL))
            self._kill_timer.daemon = True
            self._kill_timer.start()

    # -- the worker thread ------------------------------------------------------------

    def _main(self) -> None:
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        timer = None
        if deadline is not None:
            grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
            timer = threading.Timer(float(deadline), self.stop, ("DeadlineExceeded", grace))
            timer.daemon = True
            timer.start()
        try:
            self._run_pod()
            if self._stopping.is_set() and not self._gone:
                self._finish_stopped()
            if self.pod["metadata"].get("deletionTimestamp") and not self._gone:
                self._retry(lambda: finalize(self.ctx.kube, self.pod))
                self.finalized = True
                log.info("pod %s: finalized", self.key)
        except PodGoneError:
            log.info("pod %s: gone", self.key)
        except Exception:
            log.exception("pod %s: worker failed", self.key)
        finally:
            if timer is not None:
                timer.cancel()
            self.done.set()
            if self._gone:
                shutil.rmtree(self.dir, ignore_errors=True)

    def _run_pod(self) -> None:
        spec = self.pod["spec"]
        for container in (spec.get("initContainers") or []) + spec["containers"]:
            if self.ctx.images.rule_for(container.get("image", "")) is None:
                self._fail_cannot_run(container, None)
                return
        containers = [(c, s) for c, s in zip(
            (spec.get("initContainers") or []) + spec["containers"],
            self.status.all_containers, strict=True,
        )]
        for container, cstatus in containers:
            if self._stopping.is_set():
                return
            try:
                exit_code = self._run_container(container, cstatus)
            except CannotRunImageError as exc:
                self._fail_cannot_run(container, str(exc))
                return
            if exit_code is None or self._stopping.is_set():
                return  # killed: _finish_stopped() reports why
            if exit_code != 0 and cstatus.init:
                self._finish("Failed")
                return
        failed = any(not c.succeeded for c in self.status.containers)
        self._finish("Failed" if failed else "Succeeded")

    def _run_container(self, container: JSON, cstatus: ContainerStatus) -> int | None:
        """Run until the restart policy is satisfied; the last exit code, or None if stopped."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        backoff = self.ctx.restart_backoff
        while not self._stopping.is_set():
            try:
                env = container_env(self.pod, container, self.ctx.objects, self.ctx.allocatable)
                mounts = container_mounts(self.pod, container, self.ctx.objects, self.dir,
                                          mount_namespaces=self.ctx.mount_namespaces)
            except (EnvError, VolumeError) as exc:
                cstatus.set_waiting("CreateContainerConfigError", str(exc))
                self._report()
                self._stopping.wait(2.0)
                continue
            except ApiError as exc:  # e.g. the apiserver is restarting: try again
                log.warning("pod %s: reading env sources failed: %s", self.key, exc)
                self._stopping.wait(1.0)
                continue
            command = [expand(a, env) for a in container.get("command") or []] or None
            args = [expand(a, env) for a in container.get("args") or []] or None
            launch = self.ctx.images.launch(container, command, args)
            exit_code: int | None
            if launch.rule.mode == "instant":
                self._instant_log(container["name"], cstatus.restart_count, launch.rule.log)
                cstatus.set_terminated(
                    launch.rule.exit_code,
                    "Completed" if launch.rule.exit_code == 0 else "Error",
                    launch.rule.termination_message,
                )
                exit_code = launch.rule.exit_code
            else:
                exit_code = self._run_process(
                    container, cstatus=cstatus, argv=list(launch.argv), env=env,
                    rule_env=dict(launch.rule.env), path_prepend=launch.rule.path_prepend,
                    mounts=mounts,
                )
            if exit_code is None:
                return None
            restart = policy == "Always" or (policy == "OnFailure" and exit_code != 0)
            if not restart or self._stopping.is_set():
                return exit_code
            cstatus.restart()
            cstatus.set_waiting(
                "CrashLoopBackOff", f"back-off {backoff:.0f}s restarting failed container"
            )
            self._report()
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, 60.0)
        return None

    def _run_process(
        self,
        container: JSON,
        *,
        cstatus: ContainerStatus,
        argv: list[str],
        env: dict[str, str],
        rule_env: dict[str, str],
        path_prepend: tuple[str, ...],
        mounts: list[JSON],
    ) -> int | None:
        name = container["name"]
        cdir = self.dir / name
        cdir.mkdir(parents=True, exist_ok=True)
        tm_file = cdir / "termination-log"
        tm_file.write_bytes(b"")
        start_error = cdir / "start-error"
        start_error.unlink(missing_ok=True)
        log_file = self.ctx.logs.log_path(self.dir, name, cstatus.restart_count)
        tm_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
        proc_env = self._process_env(env, rule_env, path_prepend, str(tm_file))
        spec = {
            "parent": os.getpid(),
            "argv": argv,
            "cwd": container.get("workingDir") or str(self.dir / "work"),
            "tm_src": str(tm_file),
            "tm_dst": tm_path if self.ctx.mount_namespaces else None,
            "start_error_file": str(start_error),
            "mounts": mounts,
        }
        with self._lock:
            if self._stopping.is_set():
                return None
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(SHIM), json.dumps(spec)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env=proc_env, start_new_session=True, close_fds=True,
            )
            self._proc = proc
        self.ctx.logs.set_active(log_file, True)
        assert proc.stdout is not None
        pumper = threading.Thread(target=pump, args=(proc.stdout, log_file), daemon=True)
        pumper.start()
        cstatus.set_running(f"local://{proc.pid}")
        if not cstatus.init:
            self.status.phase = "Running"
        log.info("pod %s: container %s started, pid %d: %s", self.key, name, proc.pid,
                 " ".join(argv)[:200])
        self._report()
        code = proc.wait()
        _kill_group(proc.pid, signal.SIGKILL)  # what it forked dies with it, as in a container
        pumper.join(timeout=2)
        self.ctx.logs.set_active(log_file, False)
        with self._lock:
            self._proc = None
            if self._kill_timer is not None:
                self._kill_timer.cancel()
                self._kill_timer = None
        exit_code = 128 - code if code < 0 else code
        message = tm_file.read_text(errors="replace")[:4096] if tm_file.exists() else ""
        reason = "Completed" if exit_code == 0 else "Error"
        if start_error.exists():
            reason, message = "StartError", start_error.read_text()
        elif not message and exit_code != 0 and (
            container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        ):
            message = _log_tail(log_file)
        cstatus.set_terminated(exit_code, reason, message)
        log.info("pod %s: container %s exited %d (%s)", self.key, name, exit_code, reason)
        return exit_code

    def _instant_log(self, name: str, restart: int, text: str) -> None:
        """What an instant container printed (a kubelet serves an empty log, not a 404)."""
        path = self.ctx.logs.log_path(self.dir, name, restart)
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = timestamp().encode()
        path.write_bytes(b"".join(stamp + b" " + line
                                  for line in text.encode().splitlines(keepends=True)))

    def _process_env(
        self, env: dict[str, str], rule_env: dict[str, str], prepend: tuple[str, ...],
        tm_file: str,
    ) -> dict[str, str]:
        base_path = os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
        out = {
            "HOSTNAME": self.pod["spec"].get("hostname") or self.name,
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            **rule_env,
            **env,
            TERMINATION_ENV: tm_file,
        }
        dirs = [p.format(**self.ctx.path_dirs) for p in prepend]
        out["PATH"] = os.pathsep.join([*dirs, env.get("PATH") or rule_env.get("PATH") or base_path])
        return out

    # -- reporting ----------------------------------------------------------------

    def _fail_cannot_run(self, container: JSON, message: str | None) -> None:
        if message is None:
            try:
                self.ctx.images.launch(container, None, None)
                message = "cannot run image"
            except CannotRunImageError as exc:
                message = str(exc)
        for cstatus in self.status.all_containers:
            if cstatus.name == container["name"]:
                cstatus.set_terminated(128, CANNOT_RUN_REASON, message)
        self.status.reason, self.status.message = CANNOT_RUN_REASON, message
        log.info("pod %s: Failed: %s", self.key, message)
        self._finish("Failed", quiet=True)

    def _finish(self, phase: str, quiet: bool = False) -> None:
        self.status.phase = phase
        if not quiet:
            log.info("pod %s: %s", self.key, phase)
        self._report()

    def _finish_stopped(self) -> None:
        if self.status.phase in ("Succeeded", "Failed"):
            return
        if self._stop_reason == "DeadlineExceeded":
            self.status.reason = "DeadlineExceeded"
            self.status.message = "Pod was active on the node longer than the specified deadline"
        ok = all(c.succeeded for c in self.status.containers)
        self._finish("Succeeded" if ok else "Failed")

    def _report(self) -> None:
        if self._gone or self._stop_reason == AGENT_STOPPED:
            return  # pod gone, or the next agent process reports it (see Agent._mark_lost)
        body = {"status": self.status.to_json()}
        path = pod_path(self.namespace, self.name, "status")
        self._retry(lambda: self.ctx.kube.merge_patch(path, body))

    def _retry(self, call: Callable[[], T]) -> T | None:
        """Ride out apiserver restarts: retry transient errors for up to two minutes."""
        delay, deadline = 0.2, time.monotonic() + 120
        while True:
            if self._gone:
                raise PodGoneError()
            try:
                return call()
            except ApiError as exc:
                if exc.not_found:
                    raise PodGoneError() from exc
                transient = exc.status in (0, 429) or exc.status >= 500
                if not transient or time.monotonic() > deadline:
                    log.warning("pod %s: giving up on API call: %s", self.key, exc)
                    return None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def finalize(kube: KubeAPI, pod: JSON) -> None:
    """What a kubelet does last: delete the (already stopped) pod with grace 0."""
    meta = pod["metadata"]
    body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
    try:
        kube.delete(pod_path(meta["namespace"], meta["name"]), body)
    except ApiError as exc:
        if not (exc.not_found or exc.conflict):
            raise


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _log_tail(path: Path, lines: int = 80, limit: int = 2048) -> str:
    try:
        raw = path.read_bytes().splitlines()[-lines:]
    except OSError:
        return ""
    text = b"\n".join(line.partition(b" ")[2] for line in raw)
    return text[-limit:].decode(errors="replace")
