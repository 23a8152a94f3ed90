"""Container logs on disk and the kubelet's log endpoint over HTTPS, so `kubectl logs` works.

``kubectl logs`` asks the apiserver, which connects to the node's InternalIP and
``daemonEndpoints.kubeletEndpoint.Port`` with its kubelet-client certificate and
GETs ``/containerLogs/{namespace}/{pod}/{container}``. The server checks that
client certificate against the cluster CA, like a kubelet with x509 auth.

Each line is stored with its RFC 3339 timestamp (as a CRI runtime does), which
makes ``timestamps``, ``sinceSeconds`` and ``sinceTime`` possible; ``follow``
streams until the container exits. One file per container start, so
``previous=true`` shows the run before the last restart.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)


def timestamp() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _parse_ts(raw: bytes) -> dt.datetime | None:
    try:
        text = raw.decode()
        if text.endswith("Z"):
            text = text[:-1]
        if "." in text:
            head, frac = text.split(".", 1)
            text = f"{head}.{frac[:6]}"
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
    except (ValueError, UnicodeDecodeError):
        return None


class LogStore:
    """Where container logs live: ``{root}/{ns}_{pod}_{uid}/{container}/{restart}.log``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._active: set[Path] = set()
        self._lock = threading.Lock()
        # (namespace, pod) -> its pod directories this agent has named, so a log request
        # finds them at once, as a kubelet does, instead of listing the whole root (0.15 ms
        # with 100 pods, 0.4 ms with 500: it was most of this agent's CPU a pods/log read).
        self._dirs: dict[tuple[str, str], set[Path]] = {}
        self._prune_at = 1024

    def pod_dir(self, namespace: str, name: str, uid: str) -> Path:
        path = self.root / f"{namespace}_{name}_{uid}"
        with self._lock:
            self._dirs.setdefault((namespace, name), set()).add(path)
            if len(self._dirs) > self._prune_at:  # forget deleted pods, amortized
                self._dirs = {k: kept for k, v in self._dirs.items()
                              if (kept := {d for d in v if d.exists()})}
                self._prune_at = 2 * len(self._dirs) + 1024
        return path

    def log_path(self, pod_dir: Path, container: str, restart: int) -> Path:
        return pod_dir / container / f"{restart}.log"

    def set_active(self, path: Path, active: bool) -> None:
        with self._lock:
            if active:
                self._active.add(path)
            else:
                self._active.discard(path)

    def is_active(self, path: Path) -> bool:
        with self._lock:
            return path in self._active

    def find(self, namespace: str, pod: str, container: str, previous: bool) -> Path | None:
        with self._lock:
            known = list(self._dirs.get((namespace, pod), ()))
        found = [d for d in known if (d / container).is_dir()]
        if not found:  # a pod from before this agent started (the state dir outlives it)
            found = [d for d in self.root.glob(f"{namespace}_{pod}_*") if (d / container).is_dir()]
        dirs = sorted(found, key=lambda d: d.stat().st_mtime)
        if not dirs:
            return None
        runs = sorted((dirs[-1] / container).glob("*.log"), key=lambda p: int(p.stem))
        index = -2 if previous else -1
        return runs[index] if len(runs) >= -index else None


def pump(stream: IO[bytes], path: Path) -> None:
    """Copy a process's output to ``path``, one timestamped line at a time."""
    with open(path, "ab", buffering=0) as out:
        for line in iter(stream.readline, b""):
            out.write(timestamp().encode() + b" " + line)


class _Handler(BaseHTTPRequestHandler):
    server: LogServer
    timeout = 60
    # Keep-alive, as a kubelet's server does: the API server reuses its connection to the node
    # for the next pods/log request instead of a TLS handshake per read (HTTP/1.0 closed each
    # one, which made every archived attempt's log read cost two handshakes' CPU here).
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        sock = self.request
        # No Nagle, as in Go's (the kubelet's) server: the headers and the body go out as two
        # writes, and the body waited for the API server's delayed ACK, 40 ms a non-empty log.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(sock, ssl.SSLSocket):
            sock.do_handshake()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("logserver: " + format, *args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts == ["healthz"]:
            self._reply(200, b"ok")
            return
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._reply(404, b"not found")
            return
        _, namespace, pod, container = parts
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        previous = q.get("previous") == "true"
        path = self.server.store.find(namespace, pod, container, previous)
        if path is None:
            what = "previous terminated container" if previous else "container"
            self._reply(
                404, f'{what} "{container}" in pod "{pod}" has no logs on this node'.encode()
            )
            return
        if q.get("follow") != "true":  # the whole log at once, with its length: keep-alive
            self._reply(200, b"".join(_render(path, q, self.server.store)))
            return
        self.send_response(200)  # followed: streamed until the container ends, then closed
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in _render(path, q, self.server.store):
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _render(path: Path, q: dict[str, str], store: LogStore) -> Iterator[bytes]:
    with_ts = q.get("timestamps") == "true"
    follow = q.get("follow") == "true"
    tail = int(q["tailLines"]) if q.get("tailLines", "").lstrip("-").isdigit() else -1
    limit = int(q["limitBytes"]) if q.get("limitBytes", "").isdigit() else -1
    since: dt.datetime | None = None
    if q.get("sinceSeconds", "").isdigit():
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(q["sinceSeconds"]))
    elif q.get("sinceTime"):
        since = _parse_ts(q["sinceTime"].encode())
    sent = 0

    def emit(lines: list[bytes]) -> Iterator[bytes]:
        nonlocal sent
        for line in lines:
            ts, _, content = line.partition(b" ")
            if since is not None:
                when = _parse_ts(ts)
                if when is not None and when < since:
                    continue
            out = line if with_ts else content
            if limit >= 0:
                out = out[: max(0, limit - sent)]
            if out:
                sent += len(out)
                yield out
            if 0 <= limit <= sent:
                return

    with open(path, "rb") as f:
        data = f.read()
        lines = data.splitlines(keepends=True)
        pending = b""
        if lines and not lines[-1].endswith(b"\n") and store.is_active(path):
            pending = lines.pop()
        if tail >= 0:
            lines = lines[-tail:] if tail else []
        yield from emit(lines)
        while follow and not (0 <= limit <= sent):
            more = f.read()
            if more:
                pending += more
                *complete, pending = pending.split(b"\n")
                yield from emit([c + b"\n" for c in complete])
                continue
            if not store.is_active(path):
                # The last lines may have landed between our read and the check.
                pending += f.read()
                yield from emit(pending.splitlines(keepends=True))
                return
            time.sleep(0.2)


class LogServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, store: LogStore, port: int, cert: Path, key: Path, client_ca: Path | None
    ) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.store = store
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            ctx.load_verify_locations(str(client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
        self.socket = ctx.wrap_socket(self.socket, server_side=True,
                                      do_handshake_on_connect=False)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, name="logserver", daemon=True).start()
