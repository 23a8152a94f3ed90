"""The `http` step against a real local HTTP(S) server started by the test."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import pytest
from taskforge.api.resultlog import KEY_RESULT_LOG, MAX_RESULT_BYTES, parse_log
from taskforge_executor.httpcall import retry_after_seconds
from taskforge_executor.outcome import CUT_MARKER

if TYPE_CHECKING:
    from tests.executor.conftest import HttpServer, RunExecutor, TlsCert


def test_get_json_with_query_and_chosen_headers(
    run_executor: RunExecutor, http_server: HttpServer
) -> None:
    config = {
        "url": f"{http_server.url}/json",
        "query": {"page": "2", "q": "a b"},
        "responseHeaders": ["X-Request-Id", "etag", "X-Not-There"],
    }
    result = run_executor("http", config, name="fetch")

    assert result.code == 0
    assert result.message == {
        "ok": True,
        "outputs": {
            "status": 200,
            "headers": {"X-Request-Id": "req-1", "etag": '"v1"'},
            "body": {"hello": "world", "n": 1},
        },
    }
    (request,) = http_server.requests
    assert request.method == "GET"
    assert request.query == {"page": ["2"], "q": ["a b"]}
    assert f"GET {http_server.url}/json -> 200 OK in " in result.stdout


def test_post_json_is_echoed(run_executor: RunExecutor, http_server: HttpServer) -> None:
    payload = {"name": "taskforge", "tags": ["a", "b"], "nested": {"n": 1.5}}
    result = run_executor(
        "http", {"method": "POST", "url": f"{http_server.url}/echo", "json": payload}
    )

    assert result.code == 0
    body = result.outputs["body"]
    assert body["method"] == "POST"
    assert body["json"] == payload
    assert body["headers"]["content-type"] == "application/json"
    assert body["headers"]["user-agent"] == "taskforge-executor"


def test_raw_body_with_literal_header(run_executor: RunExecutor, http_server: HttpServer) -> None:
    config = {
        "method": "PUT",
        "url": f"{http_server.url}/echo",
        "body": "line one\nline two",
        "headers": [{"name": "Content-Type", "value": "text/plain"}],
    }
    result = run_executor("http", config)

    assert result.code == 0
    assert result.outputs["body"]["raw"] == "line one\nline two"
    assert http_server.requests[0].headers["content-type"] == "text/plain"


def test_text_body_is_returned_as_text(run_executor: RunExecutor, http_server: HttpServer) -> None:
    result = run_executor("http", {"url": f"{http_server.url}/text"})

    assert result.code == 0
    assert result.outputs["body"] == "plain text ünïcode"


@pytest.mark.parametrize(
    ("status", "exit_code"),
    [(404, 78), (400, 78), (401, 78), (409, 78), (500, 75), (502, 75), (503, 75), (408, 75)],
)
def test_status_classification(
    run_executor: RunExecutor, http_server: HttpServer, status: int, exit_code: int
) -> None:
    result = run_executor("http", {"url": f"{http_server.url}/status/{status}"})

    assert result.code == exit_code
    message = result.message
    assert message["ok"] is False
    assert message["retryable"] is (exit_code == 75)
    assert f"HTTP {status}" in message["error"]
    assert message["outputs"]["status"] == status
    assert message["outputs"]["body"] == f"status {status}"
    # At the top level too, where the engine's retry.httpStatus looks (outputs may be cut).
    assert message["httpStatus"] == status


def test_http_status_survives_cut_outputs(
    run_executor: RunExecutor, http_server: HttpServer
) -> None:
    """A big error body is cut to fit the termination message; the status is not."""
    result = run_executor(
        "http", {"url": f"{http_server.url}/big?kib=200", "successCodes": [201]}
    )

    assert result.code == 78
    assert result.message["httpStatus"] == 200
    assert len(result.termination) <= 4096


def test_transport_failure_has_no_http_status(
    run_executor: RunExecutor, closed_port: int
) -> None:
    result = run_executor("http", {"url": f"http://127.0.0.1:{closed_port}/", "timeout": "2s"})

    assert result.code == 75
    assert "httpStatus" not in result.message


def test_429_with_retry_after_seconds(run_executor: RunExecutor, http_server: HttpServer) -> None:
    result = run_executor("http", {"url": f"{http_server.url}/status/429?retry_after=7"})

    assert result.code == 75
    assert result.message["retryable"] is True
    assert result.message["retryAfter"] == 7


def test_503_with_retry_after_http_date(run_executor: RunExecutor, http_server: HttpServer) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    result = run_executor(
        "http",
        {"url": f"{http_server.url}/status/503", "query": {"retry_after": when}},
    )

    assert result.code == 75
    assert 100 <= result.message["retryAfter"] <= 121


def test_success_codes(run_executor: RunExecutor, http_server: HttpServer) -> None:
    accepted = run_executor(
        "http", {"url": f"{http_server.url}/status/404", "successCodes": [200, 404]}
    )
    unaccepted = run_executor("http", {"url": f"{http_server.url}/json", "successCodes": [201]})

    assert accepted.code == 0
    assert accepted.outputs["status"] == 404
    assert unaccepted.code == 78
    assert "accepted: 201" in unaccepted.message["error"]


def test_timeout_is_retryable(run_executor: RunExecutor, http_server: HttpServer) -> None:
    # The server answers after 120 s: an executor that waited for it would take that long,
    # one that gave up after 300 ms takes its start-up time, which a loaded machine can
    # stretch to several seconds (6.2 s at load 17), never to a minute.
    result = run_executor("http", {"url": f"{http_server.url}/slow?seconds=120",
                                   "timeout": "300ms"})

    assert result.code == 75
    assert "timed out after 0.3s" in result.message["error"]
    assert result.seconds < 60


def test_connection_refused_is_retryable(run_executor: RunExecutor, closed_port: int) -> None:
    result = run_executor("http", {"url": f"http://127.0.0.1:{closed_port}/"})

    assert result.code == 75
    assert "ConnectError" in result.message["error"]


def test_unsupported_scheme_is_permanent(run_executor: RunExecutor) -> None:
    result = run_executor("http", {"url": "ftp://127.0.0.1/file"})

    assert result.code == 78
    assert "invalid URL" in result.message["error"]


def test_secret_header_reaches_the_server_but_nothing_else(
    run_executor: RunExecutor, http_server: HttpServer
) -> None:
    secret = "Bearer s3cr3t-t0ken-value"
    config = {
        "method": "POST",
        "url": f"{http_server.url}/echo",
        "headers": [
            {"name": "X-Trace", "value": "visible"},
            {
                "name": "Authorization",
                "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "token"}},
            },
        ],
        "json": {"hello": "there"},
        "responseHeaders": ["Content-Type"],
    }
    result = run_executor("http", config, env={"TASKFORGE_SECRET_HEADER_1": secret})

    assert result.code == 0
    assert http_server.requests[0].headers["authorization"] == secret
    assert http_server.requests[0].headers["x-trace"] == "visible"
    assert "s3cr3t" not in result.everything()
    # The server echoed the header back; what reaches the run's status is redacted.
    assert result.outputs["body"]["headers"]["authorization"] == "[redacted]"


def test_secret_header_not_wired_is_permanent(
    run_executor: RunExecutor, http_server: HttpServer
) -> None:
    config = {
        "url": f"{http_server.url}/json",
        "headers": [
            {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "a", "key": "b"}}}
        ],
    }
    result = run_executor("http", config)

    assert result.code == 78
    assert "headers[0].valueFrom" in result.message["error"]
    assert "TASKFORGE_SECRET_HEADER_0" in result.message["error"]
    assert http_server.requests == []


@pytest.mark.parametrize("kib", [200, 1100])
def test_big_body_is_kept_whole_up_to_the_read_bound(
    run_executor: RunExecutor, http_server: HttpServer, kib: int
) -> None:
    """A body bigger than the termination message travels in the log (the operator stores
    it whole); one beyond the read bound is cut there, with a marker, and still fits the
    1 MiB result limit rather than failing the step."""
    result = run_executor(
        "http", {"url": f"{http_server.url}/big?kib={kib}", "responseHeaders": ["Content-Type"]}
    )

    assert result.code == 0, result.termination
    assert len(result.termination) <= 4096
    ref = result.message[KEY_RESULT_LOG]
    data = parse_log(result.stdout.encode(), size=ref["size"], sha256=ref["sha256"],
                     lines=ref["lines"])
    outputs = json.loads(data)
    assert outputs["status"] == 200
    assert outputs["headers"] == {"Content-Type": "application/json"}
    body: Any = outputs["body"]
    if kib < 1024:  # whole, parsed
        assert body == {"data": "x" * (kib * 1024)}
        assert not str(body["data"]).endswith(CUT_MARKER)
    else:  # beyond the read bound: not parseable, kept as cut text
        assert body.startswith('{"data": "xxx') and body.endswith(CUT_MARKER)
        assert len(data) <= MAX_RESULT_BYTES


def test_tls_verification_failure_is_permanent(
    run_executor: RunExecutor, https_server: HttpServer
) -> None:
    result = run_executor("http", {"url": f"{https_server.url}/json"})

    assert result.code == 78
    assert "TLS certificate verification failed" in result.message["error"]


def test_tls_trusted_and_verify_off(
    run_executor: RunExecutor, https_server: HttpServer, tls_cert: TlsCert
) -> None:
    trusted = run_executor("http", {"url": f"{https_server.url}/json"}, env=tls_cert.trust_env())
    unverified = run_executor("http", {"url": f"{https_server.url}/json", "verifyTls": False})

    assert trusted.code == 0
    assert trusted.outputs["body"] == {"hello": "world", "n": 1}
    assert unverified.code == 0
    assert "TLS certificate verification is off" in unverified.stdout


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "url: Field required"),
        ({"url": "http://x", "method": "BREW"}, "method: Input should be"),
        ({"url": "http://x", "timeout": "soon"}, "timeout: String should match pattern"),
        ({"url": "http://x", "json": {"a": 1}, "body": "b"}, "set at most one of json and body"),
        ({"url": "http://x", "headers": [{"value": "v"}]}, "headers[0].name: Field required"),
    ],
)
def test_malformed_http_config(
    run_executor: RunExecutor, config: dict[str, Any], field: str
) -> None:
    result = run_executor("http", config)

    assert result.code == 78
    assert result.message["error"].startswith("invalid http config: ")
    assert field in result.message["error"]


def test_retry_after_parsing() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)

    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds(" 5 ", now) == 5
    assert retry_after_seconds("Wed, 01 Jan 2025 12:01:30 GMT", now) == 90
    assert retry_after_seconds("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
    assert json.dumps(retry_after_seconds("-1", now)) == "null"
