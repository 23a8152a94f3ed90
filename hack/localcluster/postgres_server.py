"""Debian's PostgreSQL 15 on a free loopback port, for the run archive (issue 18).

Started the way Redis is (redis_server.py): its own data directory made by ``initdb`` in a
temp dir, a free port kept across restarts (so the operator reconnects to the same URL),
the unix socket in the temp dir too, never the system's ``/var/run/postgresql``.

``initdb`` and ``postgres`` refuse to run as root ("cannot be run as root"), so as root the
server runs as an unprivileged user (Debian's ``postgres``, else ``nobody``) through
``setpriv``, which execs in place: the pid we hold is the postmaster's, and signals reach
it. Its data then lives in a directory of its own under the system temp dir (pytest's
are private to root), removed again by ``cleanup()``.

Durability is traded for speed (``fsync=off``): these are throwaway test databases. A stop
is PostgreSQL's fast shutdown (SIGINT: clients cut off at once), which is what the
"database went away" tests want; the smart shutdown of SIGTERM waits for every client.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from localcluster.process import ManagedProcess, free_port

PG_BIN = Path(os.environ.get("TASKFORGE_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"


def _run_as() -> pwd.struct_passwd | None:
    """Who runs the server: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and there is no 'postgres' or 'nobody' user for"
                       " PostgreSQL (initdb refuses root)")


class PostgresServer:
    def __init__(self, workdir: Path, bin_dir: Path | None = None) -> None:
        self.workdir = workdir.resolve()
        self.bin_dir = bin_dir or PG_BIN
        self.port = 0
        self.user = _run_as()
        self.home: Path | None = None
        self._proc: ManagedProcess | None = None

    @staticmethod
    def available(bin_dir: Path | None = None) -> bool:
        return ((bin_dir or PG_BIN) / "postgres").exists()

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.alive()

    def _prefix(self) -> list[str]:
        if self.user is None:
            return []
        return ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}",
                "--clear-groups", "--"]

    def _data_home(self) -> Path:
        """The data and socket directory, owned by the server's user."""
        if self.home is None:
            if self.user is None:
                self.home = self.workdir / "pg"
                self.home.mkdir(parents=True, exist_ok=True)
            else:
                self.home = Path(tempfile.mkdtemp(prefix="taskforge-pg-"))
                os.chown(self.home, self.user.pw_uid, self.user.pw_gid)
        return self.home

    def _initdb(self, data: Path) -> None:
        argv = [*self._prefix(), str(self.bin_dir / "initdb"), "-D", str(data),
                "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              cwd=self._data_home())
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def start(self, timeout: float = 30.0) -> None:
        if self.alive():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        home = self._data_home()
        data = home / "data"
        if not (data / "PG_VERSION").exists():
            self._initdb(data)
        if not self.port:
            self.port = free_port()
        argv = [
            *self._prefix(), str(self.bin_dir / "postgres"),
            "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1", "-k", str(home),
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=100", "-c", "log_min_messages=warning",
        ]
        self._proc = ManagedProcess("postgres", argv, self.workdir / "postgres.log", cwd=home)
        self._proc.start()
        deadline = time.monotonic() + timeout
        while not self.ready():
            if not self._proc.alive():
                raise RuntimeError(f"postgres exited:\n{self._proc.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"postgres not ready on port {self.port}:\n"
                                   f"{self._proc.log_tail()}")
            time.sleep(0.1)

    def ready(self) -> bool:
        """Accepting connections (pg_isready's answer, not just a listening socket)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        done = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", SUPERUSER], check=False, capture_output=True)
        return done.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser (tests create and drop their databases with it)."""
        done = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database,
             "-c", sql], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then the group's SIGTERM/SIGKILL for anything left."""
        proc = self._proc
        if proc is None:
            return
        if proc.alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGINT)
            deadline = time.monotonic() + 10
            while proc.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        proc.stop(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop, and remove the data directory."""
        self.stop()
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None
