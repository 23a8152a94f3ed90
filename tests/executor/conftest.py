"""Fixtures for the executor tests: run the real `taskforge-executor` in a subprocess, and
real local servers (HTTP, HTTPS, SMTP) for it to talk to.

Running the installed console script, not calling `main()` in-process, tests what the pod
runs: the entry point, the exit code, the termination file, stdout, and start-up imports.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VENV_SCRIPT = Path(sys.executable).with_name("taskforge-executor")


def executor_command() -> list[str]:
    """The console script when installed (as in the image), else `python -m`."""
    if VENV_SCRIPT.exists():
        return [str(VENV_SCRIPT)]
    return [sys.executable, "-m", "taskforge_executor"]


@dataclass
class ExecResult:
    code: int
    stdout: str
    stderr: str
    termination: bytes
    seconds: float

    @property
    def full_message(self) -> dict[str, Any]:
        value = json.loads(self.termination)
        assert isinstance(value, dict)
        return value

    @property
    def message(self) -> dict[str, Any]:
        """The termination message without its copy of the log, which is checked here to be
        exactly what the process printed, whenever the executor included one."""
        value = self.full_message
        log = value.pop("log", None)
        if log is not None:
            printed = self.stdout + self.stderr  # two pipes: the order across them is lost
            assert sorted(log.splitlines(keepends=True)) == sorted(
                printed.splitlines(keepends=True)), (log, printed)
        return value

    @property
    def outputs(self) -> dict[str, Any]:
        outputs = self.message["outputs"]
        assert isinstance(outputs, dict)
        return outputs

    def everything(self) -> str:
        """All the executor let out: where a secret must never appear."""
        return self.stdout + self.stderr + self.termination.decode()


class RunExecutor(Protocol):
    def __call__(
        self,
        step_type: str,
        config: dict[str, Any],
        *,
        env: dict[str, str] | None = None,
        name: str = "step",
        command: list[str] | None = None,
        raw_step: str | None = None,
    ) -> ExecResult: ...


def base_env(tmp_path: Path) -> dict[str, str]:
    """The inherited environment minus any TASKFORGE_* leftovers, plus a private TMPDIR."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFORGE_")}
    scratch = tmp_path / "tmpdir"
    scratch.mkdir(exist_ok=True)
    env.update(
        {
            "TMPDIR": str(scratch),
            "TASKFORGE_TERMINATION_MESSAGE_PATH": str(tmp_path / "termination-log"),
            "TASKFORGE_RUN": "nightly-abc12",
            "TASKFORGE_NAMESPACE": "team-a",
            "TASKFORGE_ATTEMPT": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    return env


@pytest.fixture
def executor_env(tmp_path: Path) -> dict[str, str]:
    """The environment `run_executor` uses, for tests that drive the process themselves."""
    return base_env(tmp_path)


@pytest.fixture
def executor_cmd() -> list[str]:
    return executor_command()


@pytest.fixture
def run_executor(tmp_path: Path) -> RunExecutor:
    def run(
        step_type: str,
        config: dict[str, Any],
        *,
        env: dict[str, str] | None = None,
        name: str = "step",
        command: list[str] | None = None,
        raw_step: str | None = None,
    ) -> ExecResult:
        full_env = base_env(tmp_path)
        step = {"name": name, "type": step_type, "config": config}
        full_env["TASKFORGE_STEP"] = raw_step if raw_step is not None else json.dumps(step)
        if raw_step == "":
            del full_env["TASKFORGE_STEP"]
        full_env.update(env or {})
        termination = tmp_path / "termination-log"
        termination.unlink(missing_ok=True)
        started = time.monotonic()
        proc = subprocess.run(
            command or executor_command(),
            env=full_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return ExecResult(
            code=proc.returncode,
            stdout=proc.stdout,
            stderr=proc.stderr,
            termination=termination.read_bytes(),
            seconds=time.monotonic() - started,
        )

    return run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def port_factory() -> Callable[[], int]:
    """Hands out free local ports (for servers that cannot bind port 0 themselves)."""
    return free_port


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused."""
    return free_port()


# --- HTTP -------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpServer:
    url: str
    requests: list[Recorded] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    """Routes: /json, /echo, /status/<code>, /slow, /big, /text, /services/... (Slack)."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.record.requests.append(Recorded(self.command, parts.path, query, headers, body))
        path = parts.path
        if path == "/json":
            payload = {"hello": "world", "n": 1}
            extra = {"X-Request-Id": "req-1", "ETag": '"v1"'}
            self._reply(200, json.dumps(payload).encode(), headers=extra)
        elif path == "/echo":
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            echo = {
                "method": self.command,
                "json": parsed,
                "raw": body.decode(errors="replace"),
                "query": query,
                "headers": headers,
            }
            self._reply(200, json.dumps(echo).encode())
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            extra = {"Retry-After": query["retry_after"][0]} if "retry_after" in query else {}
            self._reply(code, f"status {code}".encode(), "text/plain", extra)
        elif path == "/slow":
            time.sleep(float(query.get("seconds", ["3"])[0]))
            self._reply(200, b"{}")
        elif path == "/big":
            kib = int(query.get("kib", ["100"])[0])
            self._reply(200, json.dumps({"data": "x" * (kib * 1024)}).encode())
        elif path == "/text":
            self._reply(200, "plain text ünïcode".encode(), "text/plain; charset=utf-8")
        elif path.startswith("/services/"):
            self._slack(path)
        else:
            self._reply(404, b"no route", "text/plain")

    def _slack(self, path: str) -> None:
        if path.endswith("/gone"):
            self._reply(404, b"no_service", "text/plain")
        elif path.endswith("/limited"):
            self._reply(429, b"rate_limited", "text/plain", {"Retry-After": "30"})
        elif path.endswith("/broken"):
            self._reply(500, b"internal_error", "text/plain")
        else:
            self._reply(200, b"ok", "text/html")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle  # noqa: N815


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a /slow handler must not hold up the teardown

    def __init__(self, record: HttpServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.record = record


def _serve(tls: ssl.SSLContext | None) -> Iterator[HttpServer]:
    record = HttpServer(url="")
    server = _Server(record)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls else "http"
    record.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    yield from _serve(None)


@pytest.fixture
def https_server(tls_cert: TlsCert) -> Iterator[HttpServer]:
    yield from _serve(tls_cert.server_context())


# --- TLS --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsCert:
    """A self-signed certificate for 127.0.0.1; trusted by a child via SSL_CERT_FILE."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def trust_env(self) -> dict[str, str]:
        return {"SSL_CERT_FILE": str(self.cert)}


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> TlsCert:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "taskforge-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsCert(cert=cert_path, key=key_path)
