"""The server's shared parts, as typed aiohttp app keys (one place, no import cycles)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from taskforge import GROUP, VERSION
from taskforge.web.errors import ApiError
from taskforge.web.kubeapi import KubeApi

_DNS = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class WebSettings:
    mode: str = "cluster"  # or "local" (taskforge ui)
    host: str = "0.0.0.0"  # a pod listens on its own address
    port: int = 8080
    viewer_queue: int = 256  # SSE messages a viewer may lag behind before it is dropped
    viewer_queue_bytes: int = 16 << 20  # ... and bytes of them (a big run's are ~200 KiB)
    cookie_secure: bool = False  # behind TLS (Ingress): mark the login cookie Secure


SETTINGS_KEY = web.AppKey("taskforge_settings", WebSettings)
KUBE_KEY = web.AppKey("taskforge_kube", KubeApi)


def crd_path(namespace: str, plural: str, name: str = "") -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


def name_arg(request: web.Request, key: str) -> str:
    """A path segment that must be a Kubernetes name (namespace, run, workflow, step)."""
    value = request.match_info[key]
    if not _DNS.match(value):
        raise ApiError(400, f"{key} {value!r} is not a valid Kubernetes name", key)
    return value


def time_arg(raw: str | None, key: str) -> datetime | None:
    """A query parameter that must be an ISO 8601 time with a zone (since, until), in UTC."""
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{key} {raw!r} is not an ISO 8601 time", key) from None
    if when.tzinfo is None:
        raise ApiError(400, f"{key} {raw!r} needs a time zone (e.g. Z)", key)
    return when.astimezone(UTC)
