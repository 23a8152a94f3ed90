"""The archive endpoints' input checks and paging token (taskforge.web.archive), and what the
server answers without an archive. No cluster, no database: tests/e2e/archive/
test_archive_api.py runs the endpoints against both."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from taskforge.web import archive, state
from taskforge.web.app import create_app
from taskforge.web.auth import Access, Check, User
from taskforge.web.errors import ApiError
from taskforge.web.kubeapi import Credentials, KubeApi
from taskforge.web.state import WebSettings


def _field(call: Any, *args: Any) -> tuple[int, str | None, str]:
    with pytest.raises(ApiError) as info:
        call(*args)
    return info.value.status, info.value.field, info.value.message


@pytest.mark.parametrize(("call", "raw", "field", "says"), [
    (archive.phases_arg, "Running", "phase", "the archive holds finished runs"),
    (archive.phases_arg, "Failed,nope", "phase", "'nope'"),
    (archive.limit_arg, "0", "limit", "1..500"),
    (archive.limit_arg, "501", "limit", "1..500"),
    (archive.limit_arg, "-1", "limit", "1..500"),
    (archive.limit_arg, "ten", "limit", "not an integer"),
    (archive.uid_arg, "x' OR '1'='1", "uid", "not a run uid"),
    (archive.uid_arg, "a" * 200, "uid", "not a run uid"),
    (archive.attempt_arg, "0", "attempt", "positive integer"),
    (archive.attempt_arg, "1e3", "attempt", "positive integer"),
    (archive.step_arg, "../etc", "step", "not a step name"),
    (archive.workflow_arg, "Not_A_Name", "workflow", "not a valid Kubernetes name"),
])
def test_bad_input_is_a_400_naming_the_field(call: Any, raw: str, field: str, says: str) -> None:
    status, got_field, message = _field(call, raw)
    assert (status, got_field) == (400, field) and says in message, message


@pytest.mark.parametrize(("raw", "says"), [
    ("yesterday", "not an ISO 8601 time"), ("2026-11-30T10:00:00", "needs a time zone")])
def test_bad_times(raw: str, says: str) -> None:
    status, field, message = _field(state.time_arg, raw, "since")
    assert (status, field) == (400, "since") and says in message


def test_good_input() -> None:
    assert archive.phases_arg("Failed,Cancelled") == ["Failed", "Cancelled"]
    assert archive.phases_arg(None) == [] and archive.limit_arg(None) == 50
    assert archive.limit_arg("500") == 500 and archive.attempt_arg("3") == 3
    assert archive.uid_arg("3f0c2d9e-1b2a-4c5d-8e9f-0a1b2c3d4e5f")
    assert state.time_arg("2026-11-30T10:00:00+01:00", "until") == datetime(
        2026, 11, 30, 9, tzinfo=UTC)


def test_paging_token_round_trip_and_binding() -> None:
    fp = archive.fingerprint("team-a", {"p": ["Failed"], "w": "etl", "l": 50})
    when = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
    token = archive.encode_cursor((when, "uid-9"), fp)
    assert archive.decode_cursor(token, fp) == (when, "uid-9"), "exact to the microsecond"
    assert archive.decode_cursor(archive.encode_cursor((None, "u"), fp), fp) == (None, "u")
    other = archive.fingerprint("team-b", {"p": ["Failed"], "w": "etl", "l": 50})
    assert other != fp, "another namespace's token is not this one's"
    status, field, message = _field(archive.decode_cursor, token, other)
    assert (status, field) == (400, "continue") and "other filters" in message
    for forged in ("not-base64!", "e30", token[:-3], "bnVsbA"):
        status, field, message = _field(archive.decode_cursor, forged, fp)
        assert (status, field) == (400, "continue"), forged
        assert "not a token this server gave out" in message


class _Everyone(Access):
    """Anyone with a token may do anything: the endpoints' own checks are what is tested."""

    def __init__(self) -> None:
        super().__init__(KubeApi(Credentials(host="http://127.0.0.1:1")))
        self.asked: list[Check] = []

    async def authenticate(self, token: str) -> User | None:
        return User(name="u", token=token)

    async def allowed(self, user: User, check: Check) -> bool:
        self.asked.append(check)
        return check.namespace != "forbidden"


async def _client(url: str | None, *, pages: bool = False
                  ) -> tuple[TestClient[web.Request, web.Application], _Everyone]:
    access = _Everyone()
    app = create_app(WebSettings(), access.kube, access, None, pages=None if pages else [])
    app[archive.ARCHIVE_KEY] = archive.ArchiveBackend(url)  # not the environment's
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, access


def test_without_an_archive_every_endpoint_says_so() -> None:
    async def go() -> None:
        client, access = await _client(None)
        try:
            headers = {"Authorization": "Bearer t"}
            for path in ("archive/runs", "archive/runs/r", "archive/runs/r/logs",
                         "archive/runs/r/steps/s/logs"):
                got = await client.get(f"/api/v1/namespaces/a/{path}", headers=headers)
                body = await got.json()
                assert got.status == 501, (path, body)
                assert body["error"]["reason"] == "NotConfigured"
                assert "TASKFORGE_ARCHIVE_URL" in body["error"]["message"]
            denied = await client.get("/api/v1/namespaces/forbidden/archive/runs",
                                      headers=headers)
            assert denied.status == 403, "RBAC is asked before the backend"
            assert Check("get", "pods", "a", group="", subresource="log") in access.asked
            bad = await client.get("/api/v1/namespaces/a/archive/runs?limit=0",
                                   headers=headers)
            assert bad.status == 400 and (await bad.json())["error"]["field"] == "limit"
            anon = await client.get("/api/v1/namespaces/a/archive/runs")
            assert anon.status == 401
        finally:
            await client.close()
    asyncio.run(go())


def test_an_unreachable_archive_is_a_503_without_the_password() -> None:
    async def go() -> None:
        client, _ = await _client("postgresql://u:s3cret-pw@127.0.0.1:1/db")
        try:
            got = await client.get("/api/v1/namespaces/a/archive/runs",
                                   headers={"Authorization": "Bearer t"})
            text = await got.text()
            assert got.status == 503 and "run archive is unavailable" in text, text
            assert "s3cret-pw" not in text
        finally:
            await client.close()
    asyncio.run(go())


def test_archive_pages_are_shells_behind_login() -> None:
    async def go() -> None:
        client, _ = await _client(None, pages=True)  # create_app's default page hooks
        try:
            anon = await client.get("/namespaces/a/archive", allow_redirects=False)
            assert anon.status == 302 and anon.headers["Location"].startswith("/login?next=")
            headers = {"Authorization": "Bearer t"}
            listed = await client.get("/namespaces/a/archive?phase=Failed&phase=Running",
                                      headers=headers)
            html = await listed.text()
            assert listed.status == 200 and "From the run archive" in html
            assert 'data-phases="Failed"' in html, "only archived phases are kept"
            assert "archive.js" in html and 'aria-current="page">Archive</a>' in html
            one = await client.get("/namespaces/a/archive/r-1?uid=abc-1", headers=headers)
            text = await one.text()
            assert one.status == 200 and 'data-uid="abc-1"' in text
            assert "From the run archive" in text
            bad = await client.get("/namespaces/a/archive/r-1?uid=%3Cscript%3E",
                                   headers=headers)
            assert bad.status == 400
            assert (await client.get("/namespaces/A_B/archive", headers=headers)).status == 404
            runs = await (await client.get("/namespaces/a/runs", headers=headers)).text()
            assert 'href="/namespaces/a/archive">Archive</a>' in runs, "the nav link"
        finally:
            await client.close()
    asyncio.run(go())
