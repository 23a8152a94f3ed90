"""The web UI and API server (`python -m taskforge.web`, as the chart runs it) as a child
process, for the e2e fixtures and hack/ui_stage.py: started, waited for, stopped."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx


def start_web_server(env: dict[str, str], url: str, log: Path,
                     timeout: float = 30.0) -> subprocess.Popen[bytes]:
    """Start the server with `env` (its TASKFORGE_UI_* settings) and return once `url`'s
    /healthz answers 200; RuntimeError with the log's tail if it exits or stays silent."""
    proc = subprocess.Popen([sys.executable, "-m", "taskforge.web"], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"web server exited:\n{_tail(log)}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_web_server(proc)
            raise RuntimeError(f"web server not up in {timeout:.0f} s:\n{_tail(log)}")
        time.sleep(0.1)


def stop_web_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]
