"""One HTTP request with the executor's failure classification, shared by `http` and `slack`.

The classification is the point of this module: the operator retries only what the exit
code says is retryable, so the split must be right. Connection errors, timeouts, 408,
429 and 5xx are transient; every other unaccepted status, a malformed URL or a TLS
certificate the server cannot prove is permanent (retrying cannot change it).
"""

from __future__ import annotations

import json
import math
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from taskforge.api.resultlog import MAX_RESULT_BYTES

from taskforge_executor.outcome import CUT_MARKER, StepError, permanent, retryable

MAX_BODY_BYTES = MAX_RESULT_BYTES - 64 * 1024
"""Read at most this much of a response: a step's whole result may be 1 MiB as JSON
(taskforge.api.resultlog), and the status, the kept headers and JSON escapes need room."""
RETRYABLE_STATUS = frozenset({408, 429})
USER_AGENT = "taskforge-executor"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> int | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0, math.ceil((when - now).total_seconds()))


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or 500 <= status <= 599


def is_accepted(status: int, success_codes: list[int] | None) -> bool:
    return status in success_codes if success_codes else 200 <= status <= 299


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    headers: httpx.Headers
    body: Any
    elapsed_ms: int


def _parse_body(raw: bytes, truncated: bool, response: httpx.Response) -> Any:
    """JSON when the server says JSON and it parses; otherwise text. Never raises."""
    if not raw:
        return None if not truncated else CUT_MARKER
    content_type = response.headers.get("content-type", "").lower()
    if not truncated and "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    text = raw.decode(response.encoding or "utf-8", errors="replace")
    return text + CUT_MARKER if truncated else text


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _transport_failure(exc: Exception, target: str, timeout: float) -> StepError:
    if isinstance(exc, httpx.TimeoutException):
        return retryable(f"{target}: timed out after {timeout:g}s ({type(exc).__name__})")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return permanent(f"{target}: invalid URL: {exc}")
    if isinstance(exc, httpx.LocalProtocolError | UnicodeEncodeError):
        return permanent(f"{target}: invalid request: {exc}")
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in _cause_chain(exc)):
        return permanent(f"{target}: TLS certificate verification failed: {exc}")
    detail = str(exc) or type(exc).__name__
    return retryable(f"{target}: {type(exc).__name__}: {detail}")


def send(
    *,
    target: str,
    method: str,
    url: str,
    timeout: float,
    headers: list[tuple[str, str]] | None = None,
    params: dict[str, str] | None = None,
    json_body: Any = None,
    content: str | None = None,
    verify: bool = True,
) -> Reply:
    """Make the request; raise a classified `StepError` if no response came back.

    `target` names the request in messages: the caller decides how much of the URL may be
    shown (a Slack webhook URL is itself the secret). The timeout bounds the whole
    exchange, body included, not just each socket read.
    """
    started = time.monotonic()
    deadline = started + timeout
    request_headers = httpx.Headers({"user-agent": USER_AGENT})
    for name, value in headers or []:
        request_headers[name] = value
    kwargs: dict[str, Any] = {"params": params, "headers": request_headers}
    if json_body is not None:
        kwargs["json"] = json_body
    elif content is not None:
        kwargs["content"] = content.encode()
    try:
        with (
            httpx.Client(timeout=timeout, verify=verify, follow_redirects=False) as client,
            client.stream(method, url, **kwargs) as response,
        ):
            raw = bytearray()
            truncated = False
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) > MAX_BODY_BYTES:
                    del raw[MAX_BODY_BYTES:]
                    truncated = True
                    break
                if time.monotonic() > deadline:
                    raise retryable(f"{target}: timed out after {timeout:g}s reading the body")
            body = _parse_body(bytes(raw), truncated, response)
    except StepError:
        raise
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeEncodeError, ssl.SSLError) as exc:
        raise _transport_failure(exc, target, timeout) from None
    return Reply(
        status=response.status_code,
        reason=response.reason_phrase,
        headers=response.headers,
        body=body,
        elapsed_ms=round((time.monotonic() - started) * 1000),
    )


def check_status(
    reply: Reply, target: str, success_codes: list[int] | None, outputs: dict[str, Any]
) -> None:
    """Raise the classified failure for an unaccepted status; `outputs` ride along."""
    if is_accepted(reply.status, success_codes):
        return
    expected = ", ".join(map(str, success_codes)) if success_codes else "2xx"
    message = f"{target}: HTTP {reply.status} {reply.reason} (accepted: {expected})"
    if is_retryable_status(reply.status):
        wait = retry_after_seconds(reply.headers.get("retry-after"))
        raise retryable(message, retry_after=wait, outputs=outputs, http_status=reply.status)
    raise permanent(message, outputs=outputs, http_status=reply.status)
