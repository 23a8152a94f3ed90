"""An async client for the Kubernetes REST API, for the web server only.

The operator's adapters use the official synchronous client in worker threads
(`taskforge.adapters.kube`). The web server is different in two ways that make that client
a poor fit: it holds long-lived streams (one watch per kind feeding every viewer, followed
logs) that would each pin a thread, and it makes writes *as the calling user*, with the
user's bearer token, so that admission records the real creator of a run (DESIGN.md's
security model: a run can use only what its creator could use). The official client binds
one identity per `ApiClient`; here the token is a per-call argument.

Credentials are loaded by the official client's loaders (in-cluster first, then the
kubeconfig, including exec plugins and client certificates) and turned into two aiohttp
sessions: one with the server's own identity, and one that presents no client certificate,
for calls made with a user's token (the API server tries client certificates before bearer
tokens, so a certificate on the connection would win over the user's token).
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes import client, config

SA_TOKEN_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
_TOKEN_FILE_TTL = 60.0  # the kubelet rotates projected tokens well before they expire


class KubeError(Exception):
    """A non-2xx answer of the API server: its status, reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass
class Credentials:
    """Where the API server is and how this process proves who it is."""

    host: str
    ca_file: str | None = None
    verify: bool = True
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    token_file: Path | None = None
    _file_token: tuple[float, str] | None = field(default=None, repr=False)

    def bearer(self) -> str | None:
        if self.token_file is not None:
            now = time.monotonic()
            if self._file_token is None or self._file_token[0] < now:
                self._file_token = (now + _TOKEN_FILE_TTL, self.token_file.read_text().strip())
            return self._file_token[1]
        return self.token

    def ssl_context(self, *, with_client_cert: bool) -> ssl.SSLContext | bool:
        if not self.host.startswith("https"):
            return False
        if not self.verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cafile=self.ca_file)
        if with_client_cert and self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def load_credentials(
    kubeconfig: str | None = None, context: str | None = None, *, in_cluster: bool = True
) -> Credentials:
    """In-cluster credentials when running in a pod (and `in_cluster`), else the kubeconfig."""
    cfg = client.Configuration()
    token_file: Path | None = None
    if in_cluster and SA_TOKEN_FILE.exists():
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        token_file = SA_TOKEN_FILE
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=cfg
        )
    header = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    token = str(header).removeprefix("Bearer ").strip() if header else None
    return Credentials(
        host=str(cfg.host).rstrip("/"), ca_file=cfg.ssl_ca_cert, verify=bool(cfg.verify_ssl),
        cert_file=cfg.cert_file, key_file=cfg.key_file, token=token, token_file=token_file,
    )


def _error(status: int, body: bytes) -> KubeError:
    try:
        data = json.loads(body)
        return KubeError(status, str(data.get("reason") or ""), str(data.get("message") or ""))
    except ValueError:
        return KubeError(status, "", body.decode(errors="replace")[:500])


class KubeApi:
    """REST calls by path; `token` makes the call as that user instead of as this server."""

    def __init__(self, creds: Credentials) -> None:
        self.creds = creds
        self._own: aiohttp.ClientSession | None = None
        self._users: aiohttp.ClientSession | None = None

    def _session(self, as_user: bool) -> aiohttp.ClientSession:
        if as_user:
            if self._users is None:
                self._users = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
                    ssl=self.creds.ssl_context(with_client_cert=False), limit=64))
            return self._users
        if self._own is None:
            self._own = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
                ssl=self.creds.ssl_context(with_client_cert=True), limit=128))
        return self._own

    def _headers(self, token: str | None, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        bearer = token if token is not None else self.creds.bearer()
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(
        self, method: str, path: str, *, query: Mapping[str, str] | None = None,
        body: Any = None, token: str | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        session = self._session(token is not None)
        async with session.request(
            method, self.creds.host + path, params=dict(query or {}), data=data,
            headers=self._headers(token, content_type if data is not None else None),
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            raw = await response.read()
            if response.status >= 300:
                raise _error(response.status, raw)
            return dict(json.loads(raw)) if raw else {}

    async def stream(
        self, path: str, *, query: Mapping[str, str] | None = None, token: str | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """The body in chunks as they arrive (pod logs with follow=true)."""
        session = self._session(token is not None)
        async with session.get(
            self.creds.host + path, params=dict(query or {}), headers=self._headers(token, None),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        ) as response:
            if response.status >= 300:
                raise _error(response.status, await response.read())
            async for chunk in response.content.iter_any():
                yield chunk

    async def watch(
        self, path: str, *, query: Mapping[str, str] | None = None, token: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events (`{"type", "object"}`) of one watch request, until the server ends it."""
        params = {**dict(query or {}), "watch": "1", "allowWatchBookmarks": "true"}
        session = self._session(token is not None)
        async with session.get(
            self.creds.host + path, params=params, headers=self._headers(token, None),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600),
        ) as response:
            if response.status >= 300:
                raise _error(response.status, await response.read())
            # Lines by hand: a run object can exceed aiohttp's readline limit (64 KiB).
            pending = b""
            async for chunk in response.content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield dict(json.loads(line))

    async def close(self) -> None:
        for session in (self._own, self._users):
            if session is not None:
                await session.close()
        self._own = self._users = None
