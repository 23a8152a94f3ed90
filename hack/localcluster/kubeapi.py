"""A small, thread-safe, dict-in dict-out Kubernetes REST client for the agent.

Why not the generated ``kubernetes`` client: it turns every pod into pydantic
models (slow at hundreds of pods per second, and the agent only needs a few
fields), and some of its responses fail to deserialize (e.g. ``pods/binding``).
The kubeconfig is still parsed by ``kubernetes.config``, so any kubeconfig the
client understands works here; the transport is a plain urllib3 pool.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer, or status 0 when the apiserver could not be reached."""

    def __init__(self, status: int, message: str, method: str = "", path: str = "") -> None:
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def pod_path(namespace: str, name: str, sub: str = "") -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}"
    return f"{path}/{sub}" if sub else path


class KubeAPI:
    def __init__(self, kubeconfig: Path, pool_size: int = 32, user_agent: str = "") -> None:
        cfg = k8s_client.Configuration()
        load: Callable[..., None] = k8s_config.load_kube_config
        load(config_file=str(kubeconfig), client_configuration=cfg)
        self.host = str(cfg.host).rstrip("/")
        self._headers = {"Accept": "application/json"}
        if user_agent:
            self._headers["User-Agent"] = user_agent
        token = cfg.api_key.get("BearerToken") if cfg.api_key else None
        if token:
            self._headers["Authorization"] = (
                token if str(token).lower().startswith("bearer ") else f"Bearer {token}"
            )
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=pool_size,
            cert_reqs="CERT_REQUIRED" if cfg.verify_ssl else "CERT_NONE",
            ca_certs=cfg.ssl_ca_cert,
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
            retries=False,
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> JSON:
        url = self._url(path, params)
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        try:
            resp = self._pool.request(
                method, url, body=data, headers=headers,
                timeout=urllib3.Timeout(connect=5.0, read=timeout),
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(0, str(exc), method, path) from exc
        return _decode(resp, method, path)

    def get(self, path: str, **params: Any) -> JSON:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any, **params: Any) -> JSON:
        return self.request("POST", path, body, params=params)

    def merge_patch(self, path: str, body: Any) -> JSON:
        return self.request("PATCH", path, body, content_type=MERGE_PATCH)

    def delete(self, path: str, body: Any = None, **params: Any) -> JSON:
        return self.request("DELETE", path, body, params=params)

    def watch(self, path: str, params: Mapping[str, Any], read_timeout: float) -> Iterator[JSON]:
        """Yield watch events until the server ends the stream; ApiError on failure."""
        url = self._url(path, {**params, "watch": "true"})
        try:
            resp = self._pool.request(
                "GET", url, headers=self._headers, preload_content=False,
                timeout=urllib3.Timeout(connect=5.0, read=read_timeout),
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(0, str(exc), "WATCH", path) from exc
        try:
            if resp.status != 200:
                _decode(resp, "WATCH", path)
            buf = b""
            for chunk in resp.stream(65536, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(0, str(exc), "WATCH", path) from exc
        finally:
            resp.release_conn()

    def _url(self, path: str, params: Mapping[str, Any] | None) -> str:
        url = self.host + path
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        return f"{url}?{urlencode(query)}" if query else url


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _decode(resp: urllib3.BaseHTTPResponse, method: str, path: str) -> JSON:
    raw = resp.data if resp.data is not None else b""
    if not 200 <= resp.status < 300:
        message = raw.decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            message = str(json.loads(raw).get("message", message))
        raise ApiError(resp.status, message, method, path)
    if not raw:
        return {}
    result = json.loads(raw)
    return result if isinstance(result, dict) else {"items": result}
