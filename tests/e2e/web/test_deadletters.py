"""Dead letters per namespace through the API (RBAC on workflowruns in that namespace), and
`taskforge dlq` through the API: directly (--server) and through the API server's service
proxy, with no Redis credentials."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from localcluster.testing import ClusterUnderTest
from taskforge.adapters.deadletter import DeadLetterStream, migrate_legacy
from taskforge.adapters.redis_client import RedisConnection, RedisSettings

from tests.e2e.cli_kit import CLI
from tests.e2e.operator.conftest import Kube
from tests.e2e.proxy_kit import host_address, stand_in_service, user_kubeconfig
from tests.e2e.web.conftest import Api, Users, WebServer, error_of

pytestmark = pytest.mark.local_agent


def ship(redis_url: str, namespace: str, run: str, workflow: str = "pipeline") -> str:
    async def go() -> str:
        conn = RedisConnection(RedisSettings(url=redis_url))  # the server's prefix
        try:
            return await DeadLetterStream(conn, namespace).ship({
                "id": f"uid-{uuid.uuid4().hex[:6]}/transform", "workflow": workflow,
                "namespace": namespace, "run": run, "step": "transform",
                "params": {"who": "dlq"}, "error": "script exited 1", "attempts": 3,
                "failedAt": "2026-11-30T12:00:00Z"})
        finally:
            await conn.aclose()
    return asyncio.run(go())


def test_dead_letters_per_namespace_and_rbac(web: WebServer, users: Users, kube: Kube,
                                             redis_server: Any) -> None:
    kube.workflow("pipeline", {"params": [{"name": "who", "type": "string"}],
                               "steps": [{"name": "transform", "log": {"message": "x"}}]})
    other = f"other-{uuid.uuid4().hex[:6]}"
    mine = [ship(redis_server.url, users.namespace, f"run-{i}") for i in range(3)]
    theirs = ship(redis_server.url, other, "their-run")
    viewer, editor, nobody = (Api(web, t, users.namespace)
                              for t in (users.viewer, users.editor, users.nobody))

    assert nobody("GET", "deadletters").status_code == 403
    listed = viewer("GET", "deadletters").json()
    assert [e["id"] for e in listed["items"]] == mine[::-1]
    assert {e["namespace"] for e in listed["items"]} == {users.namespace}
    assert viewer("GET", f"/api/v1/namespaces/{other}/deadletters").status_code == 403
    found = viewer("GET", f"deadletters/{theirs}")  # another namespace's id: not here
    assert found.status_code == 404 or found.json()["namespace"] == users.namespace
    page = viewer("GET", "deadletters", params={"limit": "2"}).json()
    assert len(page["items"]) == 2 and page["continue"] == mine[1]
    rest = viewer("GET", "deadletters", params={"limit": "2", "before": page["continue"]})
    assert [e["id"] for e in rest.json()["items"]] == [mine[0]]
    shown = viewer("GET", f"deadletters/{mine[0]}").json()
    assert shown["params"] == {"who": "dlq"} and shown["attempts"] == 3

    for method, path in (("GET", "deadletters/not-an-id"), ("GET", "deadletters?before=x"),
                         ("DELETE", "deadletters/not-an-id")):
        bad = editor(method, path)
        assert bad.status_code == 400 and "not a dead-letter id" in error_of(bad)["message"]
    assert editor("GET", "deadletters/1-0").status_code == 404
    assert error_of(editor("GET", "deadletters?limit=0"))["field"] == "limit"
    assert error_of(editor("DELETE", "deadletters"))["field"] == "all"

    assert viewer("POST", f"deadletters/{mine[0]}/replay").status_code == 403
    replayed = editor("POST", f"deadletters/{mine[0]}/replay")
    assert replayed.status_code == 201, replayed.text
    new = replayed.json()["run"]["name"]
    assert replayed.json()["deadLetter"]["replayedAs"] == new
    run = kube.run(new)
    assert run["spec"]["trigger"] == {"type": "replay"} and run["spec"]["params"] == {
        "who": "dlq"}

    assert viewer("DELETE", f"deadletters/{mine[1]}").status_code == 403
    assert editor("DELETE", f"deadletters/{mine[1]}").json() == {"purged": 1}
    assert editor("DELETE", f"deadletters/{mine[1]}").status_code == 404
    assert viewer("DELETE", "deadletters", params={"all": "true"}).status_code == 403
    assert editor("DELETE", "deadletters", params={"all": "true"}).json() == {"purged": 2}
    assert viewer("GET", "deadletters").json()["items"] == []

    async def still_there() -> Any:
        conn = RedisConnection(RedisSettings(url=redis_server.url))
        try:
            return await DeadLetterStream(conn, other).show(theirs)
        finally:
            await conn.aclose()
    assert asyncio.run(still_there()) is not None, "another namespace's record was untouched"


def test_an_id_from_before_the_per_namespace_layout_is_a_clear_404(
        web: WebServer, users: Users, redis_server: Any) -> None:
    """A record of the old single stream moves to its namespace's stream with a new id: the
    old id (in someone's notes or shell history) is a 404 that says why, not a traceback."""
    async def legacy_record() -> str:
        conn = RedisConnection(RedisSettings(url=redis_server.url))
        try:
            sid = str(await conn.client.xadd(conn.key("dlq"), {
                "id": f"uid-{uuid.uuid4().hex[:6]}/fetch", "namespace": users.namespace,
                "run": "old-run", "workflow": "pipeline", "step": "fetch", "params": "{}",
                "error": "exit 1", "attempts": "1", "failedAt": "2026-11-01T00:00:00Z"}))
            # Stream ids are the millisecond and a sequence: a move within the same millisecond
            # would give the record the very same id in its new stream (then the old id still
            # finds it). Records of the old layout are older than that.
            await asyncio.sleep(0.01)
            await migrate_legacy(conn)
            return sid
        finally:
            await conn.aclose()

    old = asyncio.run(legacy_record())
    viewer = Api(web, users.viewer, users.namespace)
    moved = [e for e in viewer("GET", "deadletters").json()["items"] if e["run"] == "old-run"]
    assert len(moved) == 1 and moved[0]["id"] != old
    gone = viewer("GET", f"deadletters/{old}")
    assert gone.status_code == 404, gone.text
    error = error_of(gone)
    assert error["field"] == "id" and old in error["message"]
    assert "per namespace" in error["message"] and "new ids" in error["message"]
    assert viewer("GET", f"deadletters/{moved[0]['id']}").json()["run"] == "old-run"


def _dlq(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(kubeconfig.parent)}  # no REDIS_URL here
    return subprocess.run([str(CLI), "--kubeconfig", str(kubeconfig), "dlq", *args],
                          capture_output=True, text=True, timeout=60, check=False, env=env)


def test_cli_dlq_goes_through_the_api(  # noqa: PLR0917 - fixtures
    web: WebServer, users: Users, kube: Kube, cluster: ClusterUnderTest, redis_server: Any,
    tmp_path: Path,
) -> None:
    kube.workflow("pipeline", {"params": [{"name": "who", "type": "string"}],
                               "steps": [{"name": "transform", "log": {"message": "x"}}]})
    sid = ship(redis_server.url, users.namespace, "run-cli")
    editor = user_kubeconfig(cluster, users.editor, tmp_path / "editor.kubeconfig", users.namespace)
    nobody = user_kubeconfig(cluster, users.nobody, tmp_path / "nobody.kubeconfig", users.namespace)

    direct = _dlq(editor, "list", "--server", web.url, "-o", "json")
    assert direct.returncode == 0, direct.stderr
    assert [e["id"] for e in json.loads(direct.stdout)] == [sid]
    bad = _dlq(editor, "show", "not-an-id", "--server", web.url)
    assert bad.returncode == 1 and "is not a dead-letter id" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1 and "Traceback" not in bad.stderr

    address = host_address()
    if address is None:
        pytest.skip("no non-loopback address for the Service's Endpoints")
    # The chart's Service, stood in for by one without a selector pointing at the server;
    # the editor may use its proxy to read, replay (create) and purge (delete).
    service = stand_in_service(cluster, users.namespace, address, web.port, "editor",
                               verbs="get, create, delete")
    replay = _dlq(editor, "replay", sid, "--service", service)
    assert replay.returncode == 0, replay.stderr
    new = replay.stdout.split()[0].removeprefix("workflowrun.taskforge.io/")
    assert kube.run(new)["spec"]["trigger"] == {"type": "replay"}
    # RBAC as the user, twice: the API server's proxy (services/proxy), then the web API's
    # own review (list workflowruns), which the nobody user fails at the first
    refused = _dlq(nobody, "list", "--service", service)
    assert refused.returncode == 1 and "services/proxy" in refused.stderr, refused.stderr
