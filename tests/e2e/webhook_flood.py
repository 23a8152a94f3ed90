"""A webhook sender for the roll tests (tests/e2e/ha, tests/e2e/node): HMAC-signed
deliveries at a steady pace, each retried with its own delivery id until acknowledged,
as GitHub and GitLab redeliver.

Not a test module.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx


class Flood:
    """Deliveries, each with its own id, sent every `pace` seconds until stopped, from a pool
    of threads, to the base URLs currently in `endpoints` (round robin, like a Service; one
    URL when it is a Service); a refused connection, a timeout or a 5xx is retried with the
    same delivery id until acknowledged (`patience` seconds at most)."""

    def __init__(self, url_path: str, key: bytes, senders: int, patience: float = 60) -> None:
        self.path = url_path
        self.key = key
        self.total = 0
        self.senders = senders
        self.patience = patience
        self.stop = threading.Event()
        self.endpoints: list[str] = []
        self.lock = threading.Lock()
        self.acked: dict[str, str] = {}  # delivery id -> run
        self.retries = Counter[str]()
        self._turn = 0

    def _endpoint(self) -> str:
        with self.lock:
            self._turn += 1
            return self.endpoints[self._turn % len(self.endpoints)]

    def _deliver(self, n: int) -> None:
        delivery = f"flood-{n}"
        body = json.dumps({"n": n}).encode()
        headers = {"Content-Type": "application/json", "X-Taskforge-Delivery": delivery,
                   "X-Taskforge-Signature": "sha256=" + hmac.new(
                       self.key, body, hashlib.sha256).hexdigest()}
        deadline = time.monotonic() + self.patience
        while time.monotonic() < deadline:
            try:
                answer = httpx.post(f"{self._endpoint()}{self.path}", content=body,
                                    headers=headers, timeout=10)
            except httpx.HTTPError as exc:
                with self.lock:
                    self.retries[type(exc).__name__] += 1
                time.sleep(0.2)
                continue
            if answer.status_code == 202:
                with self.lock:
                    self.acked[delivery] = answer.json()["run"]
                return
            assert answer.status_code >= 500, (answer.status_code, answer.text)
            with self.lock:
                self.retries[str(answer.status_code)] += 1
            time.sleep(0.2)
        raise AssertionError(f"delivery {delivery} never acknowledged")

    @property
    def retried(self) -> int:
        with self.lock:
            return sum(self.retries.values())

    def run(self, pace: float) -> None:
        with ThreadPoolExecutor(self.senders) as pool:
            futures = []
            while not self.stop.is_set():
                futures.append(pool.submit(self._deliver, self.total))
                self.total += 1
                time.sleep(pace)
            for f in futures:
                f.result()
