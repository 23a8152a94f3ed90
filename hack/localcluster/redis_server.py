"""Debian's redis-server on a free loopback port, for rate limits and dead letters.

Persistence is off (``--save '' --appendonly no``): a restart is a clean Redis,
which is exactly what the "Redis went away" tests want to provoke. The port is
kept across restarts so clients reconnect to the same URL.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

from localcluster.process import ManagedProcess, free_port


class RedisServer:
    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        self.workdir = workdir.resolve()
        found = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.binary = found
        self.port = 0
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.alive()

    def start(self, timeout: float = 10.0) -> None:
        if self.alive():
            return
        if not self.port:
            self.port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--protected-mode", "no",
            "--daemonize", "no",
        ]
        self._proc = ManagedProcess("redis-server", argv, self.workdir / "redis.log")
        self._proc.start()
        deadline = time.monotonic() + timeout
        while not self._ping():
            if not self._proc.alive():
                raise RuntimeError(f"redis-server exited:\n{self._proc.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server not answering on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _ping(self) -> bool:
        """Raw RESP PING, so the launcher does not depend on a Redis client library."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False
