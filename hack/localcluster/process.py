"""Child-process plumbing shared by every component of the local cluster.

Every binary the launcher starts (etcd, kube-apiserver, the agent, redis...) must
die with the launcher: a leaked kube-apiserver keeps its port and its etcd alive
and poisons the next test session. Three layers make that so:

* each child gets ``PR_SET_PDEATHSIG=SIGKILL``, so the kernel kills it when the
  launching *thread* dies, even on ``kill -9`` of the launcher. The signal follows
  the thread, not the process, so children must be spawned from a long-lived
  thread (the main thread in practice), never from a short-lived worker;
* each child leads its own process group, so ``stop()`` reaches grandchildren;
* ``atexit`` and a SIGTERM handler stop whatever is still registered.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None


def _set_pdeathsig() -> None:
    """Runs in the forked child before exec: die with the parent thread."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _load_libc() -> None:
    # Loaded in the parent: dlopen between fork and exec is not async-signal-safe.
    global _libc  # noqa: PLW0603
    if _libc is None:
        with contextlib.suppress(OSError):
            _libc = ctypes.CDLL(None, use_errno=True)


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the usual small race is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class ManagedProcess:
    """One long-running child with its log file, process group and death signal."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def start(self) -> None:
        if self.alive():
            return
        _load_libc()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            out.write(f"\n==== {time.strftime('%H:%M:%S')} starting {self.name}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_set_pdeathsig,  # noqa: PLW1509 - only prctl, no locks taken
                close_fds=True,
            )
        _registry.add(self)
        log.debug("started %s pid %s", self.name, self._proc.pid)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the whole group, SIGKILL what is left after ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs, killing it", self.name, timeout)
        # Kill stragglers in the group even when the leader exited on its own.
        _signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        _registry.discard(self)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _Registry:
    """Processes still running, stopped at interpreter exit or on SIGTERM."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: list[ManagedProcess] = []
        self._installed = False

    def add(self, proc: ManagedProcess) -> None:
        with self._lock:
            if proc not in self._procs:
                self._procs.append(proc)
            if not self._installed:
                self._installed = True
                atexit.register(self.stop_all)
                _install_sigterm_handler()

    def discard(self, proc: ManagedProcess) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._procs.remove(proc)

    def stop_all(self) -> None:
        with self._lock:
            procs = list(reversed(self._procs))
        for proc in procs:
            proc.stop(timeout=5)


_registry = _Registry()


def _install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit so atexit and ``finally`` blocks run.

    Only when nobody else handles SIGTERM and only from the main thread: a host
    application's own handler wins.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def wait_until(
    predicate: Callable[[], object], timeout: float, interval: float = 0.1, what: str = "condition"
) -> None:
    """Poll ``predicate()`` until it is truthy; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
