"""A small pool of template worker processes with a hard time limit and a memory limit.

Implements the engine's `Renderer` (engine.templating): `render(config, context, root)`
renders a step config in a worker (template_worker.py) and blocks until it answers, so it is
called from a planning thread, never from the event loop (handlers/planning.py). A worker
that does not answer within RENDER_TIMEOUT_SECONDS is killed (SIGKILL: a template stuck in
one C call ignores anything gentler) and a new one started; the step fails with
TemplateLimit. A worker that dies while rendering (its memory rlimit, the kernel's OOM
killer) fails the step the same way. A worker that cannot start at all is the operator's
problem, not the template's: that raises WorkerUnavailable and the reconcile is retried.

Why not pebble or concurrent.futures: with `spawn` or `forkserver` (fork is unsafe in the
multi-threaded operator) multiprocessing re-imports the parent's `__main__` in every worker,
which for `taskforge.handlers.main` is the whole operator: measured 6-8 s and 81 MiB per
worker start on the 2-core CI machine, paid again after every kill. A plain subprocess that
imports only Jinja and the engine starts in ~0.15 s with ~20 MiB, and speaking JSON instead
of pickle means the operator never unpickles what a process running user templates sent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import subprocess
import sys
import time
from typing import Any

from taskforge.adapters import metrics
from taskforge.engine.sandbox import (
    MAX_CONFIG_BYTES,
    RENDER_TIMEOUT_SECONDS,
    WORKER_MEMORY_BYTES,
    TemplateError,
    TemplateLimitError,
)

log = logging.getLogger("taskforge.templates")
DEFAULT_WORKERS = 2
START_TIMEOUT_SECONDS = 30.0
MAX_REPLY_BYTES = 2 * MAX_CONFIG_BYTES + 64 * 1024
WORKER_MODULE = "taskforge.adapters.template_worker"


class WorkerUnavailableError(RuntimeError):
    """A template worker could not be started: retry the reconcile later."""


class _Worker:
    """One worker process, used by one thread at a time (the pool's queue sees to it)."""

    def __init__(self, memory: int) -> None:
        self.memory = memory
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.buffer = b""

    def spawn(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, str(self.memory)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
        )
        self.ready, self.buffer = False, b""

    def kill(self) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        with contextlib.suppress(OSError):
            proc.kill()
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        return proc.wait()

    def _read_line(self, timeout: float) -> bytes:
        """One line from the worker; TimeoutError, or EOFError if it exited."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError
            self.buffer += chunk
            if len(self.buffer) > MAX_REPLY_BYTES:
                raise OverflowError
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def ensure_ready(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.kill()
            self.spawn()
        if self.ready:
            return
        try:
            line = self._read_line(START_TIMEOUT_SECONDS)
            self.ready = json.loads(line) == {"ready": True}
        except (TimeoutError, EOFError, OverflowError, ValueError):
            self.ready = False
        if not self.ready:
            code = self.kill()
            raise WorkerUnavailableError(f"template worker did not start (exit code {code})")

    def render(self, request: bytes, timeout: float, root: str) -> dict[str, Any]:
        self.ensure_ready()
        assert self.proc is not None and self.proc.stdin is not None
        field = root  # the field being rendered, as the worker reports it
        deadline = time.monotonic() + timeout
        try:
            self.proc.stdin.write(request)
            self.proc.stdin.flush()
            while "rendering" in (reply := json.loads(self._read_line(
                    deadline - time.monotonic()))):
                field = str(reply["rendering"])
        except TimeoutError:
            self._replace("timeout")
            raise TemplateLimitError(f"{field}: rendering took longer than {timeout:g} s"
                                     ) from None
        except OverflowError:
            self._replace("oversized")
            raise TemplateLimitError(f"{root}: rendered config exceeds {MAX_CONFIG_BYTES}"
                                     " bytes") from None
        except (EOFError, BrokenPipeError):
            code = self._replace("died")
            raise TemplateLimitError(
                f"{field}: the template worker stopped while rendering (exit code {code}):"
                " the template went over its memory or time limit") from None
        except ValueError as exc:  # not JSON: a bug, not the template's fault
            self._replace("garbled")
            raise WorkerUnavailableError(f"template worker sent garbage: {exc}") from None
        if "ok" in reply:
            return dict(reply["ok"])
        cls = TemplateLimitError if reply.get("error") == "TemplateLimit" else TemplateError
        raise cls(str(reply.get("message")))

    def _replace(self, why: str) -> int | None:
        """Kill this worker and start the next one now, so it is warm for the next render."""
        code = self.kill()
        metrics.TEMPLATE_WORKER_RESTARTS.labels(why).inc()
        log.warning("template worker replaced (%s, exit code %s)", why, code)
        try:
            self.spawn()
        except OSError as exc:  # tried again on the next render
            log.error("could not start a template worker: %s", exc)
        return code


class TemplateWorkers:
    """The pool. `render` is the engine's Renderer; call it from a thread, not the loop."""

    def __init__(self, size: int = DEFAULT_WORKERS, timeout: float = RENDER_TIMEOUT_SECONDS,
                 memory: int = WORKER_MEMORY_BYTES) -> None:
        self.size = max(1, size)
        self.timeout = timeout
        self._workers = [_Worker(memory) for _ in range(self.size)]
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for worker in self._workers:
            self._idle.put(worker)

    @classmethod
    def from_env(cls) -> TemplateWorkers:
        return cls(
            size=int(os.environ.get("TASKFORGE_TEMPLATE_WORKERS", DEFAULT_WORKERS)),
            timeout=float(os.environ.get("TASKFORGE_TEMPLATE_TIMEOUT_SECONDS",
                                         RENDER_TIMEOUT_SECONDS)),
        )

    def start(self) -> None:
        """Start every worker now (they load in the background) so no run waits for it."""
        for worker in self._workers:
            if worker.proc is None:
                worker.spawn()

    def render(self, config: dict[str, Any], context: dict[str, Any], root: str
               ) -> dict[str, Any]:
        request = json.dumps({"config": config, "context": context, "root": root},
                             separators=(",", ":")).encode() + b"\n"
        worker = self._idle.get()
        outcome = "error"
        try:
            rendered = worker.render(request, self.timeout, root)
            outcome = "ok"
            return rendered
        except TemplateLimitError:
            outcome = "limit"
            raise
        except TemplateError:
            outcome = "template_error"
            raise
        finally:
            self._idle.put(worker)
            metrics.TEMPLATE_RENDERS.labels(outcome).inc()

    def close(self) -> None:
        for worker in self._workers:
            worker.kill()
