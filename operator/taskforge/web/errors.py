"""Every failure of the API as one JSON shape, and the middleware that makes it so.

`{"error": {"status", "reason", "message", "field"}}`: the UI shows `message`, the CLI prints
it as its one-line error, and `field` names the input at fault (a param, `limit`, `continue`).
API server errors are passed on with their own status and message (they already name the
object); anything unexpected is a 500 with no detail (logged here, never sent).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from taskforge.web.kubeapi import KubeError

log = logging.getLogger("taskforge.web")

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
           405: "MethodNotAllowed", 409: "Conflict", 410: "Gone", 413: "TooLarge",
           422: "Invalid", 500: "InternalError", 501: "NotConfigured", 503: "Unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def error_response(status: int, message: str, field: str | None = None) -> web.Response:
    body = {"error": {"status": status, "reason": REASONS.get(status, "Error"),
                      "message": message, "field": field}}
    return web.json_response(body, status=status)


def from_kube(exc: KubeError) -> ApiError:
    status = exc.status if exc.status in REASONS else 502
    return ApiError(status, exc.message or f"the API server answered {exc.status}")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """ApiError, KubeError and aiohttp's own HTTP errors under /api/ become the JSON shape."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.field)
    except KubeError as exc:
        err = from_kube(exc)
        return error_response(err.status, err.message)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        return error_response(exc.status, exc.reason)
    except (ConnectionError, TimeoutError, OSError) as exc:
        log.warning("%s %s: %s", request.method, request.path, exc)
        return error_response(503, f"a backend is unreachable: {type(exc).__name__}")


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; 400 naming what is wrong otherwise."""
    if request.content_length is not None and request.content_length > 1_048_576:
        raise ApiError(413, "request body over 1 MiB")
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data
