"""The run archive through the web API (issue 18 item 3; taskforge.web.archive), and the CLI
reading it that way: a real PostgreSQL, the real server (`python -m taskforge.web`) and the
local control plane for TokenReview and SubjectAccessReview, users with Roles in one
namespace only.

Most tests seed the archive with the archive's own writer (archive_db.write) in a database
of their own (the operator's retention would remove rows under it); the last one goes end
to end: the real operator archives a run, the run is deleted, and `taskforge get/logs` show
it through the API.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from localcluster.postgres_server import PostgresServer
from localcluster.testing import ClusterUnderTest
from localcluster.webserver import start_web_server, stop_web_server
from taskforge.adapters import archive_db

from tests.e2e.archive.conftest import new_database, wait_gone
from tests.e2e.cli_kit import CLI
from tests.e2e.operator.conftest import Kube
from tests.e2e.web.conftest import VIEW_RULES, _rbac, error_of

pytestmark = pytest.mark.local_agent

NOW = datetime.now(UTC).replace(microsecond=0)
RUNS_RULES_ONLY = """
- apiGroups: [taskforge.io]
  resources: [workflowruns]
  verbs: [get, list]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, kubeconfig: Path, archive_url: str | None, log: Path) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k != "TASKFORGE_ARCHIVE_URL"}
        env |= {"KUBECONFIG": str(kubeconfig), "TASKFORGE_UI_PORT": str(port),
                "TASKFORGE_UI_HOST": "127.0.0.1"}
        env |= {"TASKFORGE_ARCHIVE_URL": archive_url} if archive_url else {}
        self.proc = start_web_server(env, self.url, log)

    def stop(self) -> None:
        stop_web_server(self.proc)


def _migrate(url: str) -> None:
    async def go() -> None:
        conn = await archive_db.connect(url)
        try:
            await archive_db.migrate(conn)
        finally:
            await conn.close()
    asyncio.run(go())


def seed(url: str, records: list[tuple[str, dict[str, Any]]]) -> None:
    async def go() -> None:
        conn = await archive_db.connect(url)
        try:
            await archive_db.write(conn, records)
        finally:
            await conn.close()
    asyncio.run(go())


def run_record(ns: str, name: str, *, uid: str | None = None, workflow: str = "etl",
               phase: str = "Succeeded", finished: datetime = NOW,
               params: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    return ("run", {"uid": uid or str(uuid.uuid4()), "namespace": ns, "name": name,
                    "workflow": workflow, "workflow_generation": 1, "phase": phase,
                    "trigger": "manual", "params": params or {"who": name},
                    "message": f"{name} {phase.lower()}", "created_at": finished,
                    "started_at": finished - timedelta(seconds=5), "finished_at": finished})


def attempt_records(uid: str, step: str, attempt: int, text: str, *,
                    exit_code: int = 0) -> list[tuple[str, dict[str, Any]]]:
    return [("attempt", {"run_uid": uid, "step": step, "attempt": attempt,
                         "job_name": f"job-{step}-{attempt}", "started_at": NOW,
                         "finished_at": NOW, "exit_code": exit_code,
                         "reason": "Succeeded" if exit_code == 0 else "Failed",
                         "message": None if exit_code == 0 else f"exit {exit_code}"}),
            ("log", {"run_uid": uid, "step": step, "attempt": attempt,
                     "pod": f"pod-{step}-{attempt}", "size": len(text.encode()),
                     "truncated": False, "note": None,
                     "content": gzip.compress(text.encode())})]


@pytest.fixture(scope="module")
def seeded_url(postgres: PostgresServer) -> str:
    url = new_database(postgres)
    _migrate(url)
    return url


@pytest.fixture(scope="module")
def server(cluster: ClusterUnderTest, crds: None, seeded_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(cluster.kubeconfig, seeded_url, tmp_path_factory.mktemp("web") / "web.log")
    yield s
    s.stop()


class Team:
    """Two namespaces, A and B, each with a viewer (rights in its own namespace only), and in
    A a user who may read runs but not pod logs, and one with no rights."""

    def __init__(self, cluster: ClusterUnderTest, a: str) -> None:
        self.cluster, self.a, self.b = cluster, a, f"e2e-b-{uuid.uuid4().hex[:6]}"
        cluster.kubectl("create", "namespace", self.b)
        cluster.kubectl("apply", "-n", a, "-f", "-", input="".join(
            _rbac(a, name, rules) for name, rules in
            (("viewer", VIEW_RULES), ("runs-only", RUNS_RULES_ONLY), ("nobody", None))))
        cluster.kubectl("apply", "-n", self.b, "-f", "-", input=_rbac(self.b, "viewer",
                                                                       VIEW_RULES))
        core = client.CoreV1Api(cluster.api_client())

        def token(ns: str, name: str) -> str:
            deadline = time.monotonic() + 30
            while True:
                try:
                    answer = core.create_namespaced_service_account_token(
                        name, ns, {"spec": {"expirationSeconds": 3600}})
                    return str(answer.status.token)
                except client.ApiException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        self.viewer_a, self.runs_only_a = token(a, "viewer"), token(a, "runs-only")
        self.nobody_a, self.viewer_b = token(a, "nobody"), token(self.b, "viewer")

    def delete(self) -> None:
        self.cluster.kubectl("delete", "namespace", self.b, "--wait=false", check=False)


@pytest.fixture
def team(cluster: ClusterUnderTest, namespace: str) -> Iterator[Team]:
    t = Team(cluster, namespace)
    yield t
    t.delete()


def api(server: Server, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def test_list_get_logs_per_namespace_and_rbac(server: Server, team: Team,
                                              seeded_url: str) -> None:
    a, b = team.a, team.b
    again = [run_record(a, "nightly", phase="Failed", finished=NOW - timedelta(days=2)),
             run_record(a, "nightly", finished=NOW - timedelta(days=1))]
    first_uid, second_uid = (r[1]["uid"] for r in again)
    mine = [run_record(a, f"run-{i}", workflow="etl" if i % 2 else "load",
                       phase="Failed" if i % 3 == 0 else "Succeeded",
                       finished=NOW - timedelta(hours=i)) for i in range(7)]
    # two runs that finished at the same instant: paging must neither skip nor repeat one
    tie = NOW - timedelta(hours=3, minutes=30)
    mine += [run_record(a, "tie-x", finished=tie), run_record(a, "tie-y", finished=tie)]
    theirs = run_record(b, "nightly", uid=f"b-{uuid.uuid4().hex[:8]}", params={"secret": "b"})
    records = [*again, *mine, theirs]
    records += attempt_records(second_uid, "extract", 1, "first try\n", exit_code=3)
    records += attempt_records(second_uid, "extract", 2, "second try\nrows: 42\n")
    records += attempt_records(second_uid, "load", 1, "loaded\n")
    records += attempt_records(first_uid, "extract", 1, "the older run's log\n", exit_code=1)
    records += attempt_records(theirs[1]["uid"], "extract", 1, "B's private log\n")
    seed(seeded_url, records)
    viewer, other, nobody = api(server, team.viewer_a), api(server, team.viewer_b), api(
        server, team.nobody_a)
    base_a, base_b = f"/api/v1/namespaces/{a}/archive/runs", f"/api/v1/namespaces/{b}/archive/runs"

    # --- list: RBAC, filters, paging ---------------------------------------------------
    assert nobody.get(base_a).status_code == 403
    assert api(server, None).get(base_a).status_code == 401
    denied = viewer.get(base_b)
    assert denied.status_code == 403 and "list workflowruns" in error_of(denied)["message"]
    assert "nightly" not in denied.text and "B's private" not in denied.text
    listed = viewer.get(base_a, params={"limit": "500"}).json()
    assert {i["namespace"] for i in listed["items"]} == {a} and listed["continue"] is None
    assert len(listed["items"]) == len(again) + len(mine)
    finished = [i["finishedAt"] for i in listed["items"]]
    assert finished == sorted(finished, reverse=True), "newest finished first"
    pages: list[str] = []
    token = None
    while True:
        page = viewer.get(base_a, params={"limit": "2", **({"continue": token} if token
                                                           else {})}).json()
        assert len(page["items"]) <= 2
        pages += [i["uid"] for i in page["items"]]
        token = page["continue"]
        if not token:
            break
    assert pages == [i["uid"] for i in listed["items"]], "pages are the list, once each"
    failed = viewer.get(base_a, params={"phase": "Failed", "workflow": "load"}).json()["items"]
    assert {(i["name"], i["phase"], i["workflow"]) for i in failed} == {
        ("run-0", "Failed", "load"), ("run-6", "Failed", "load")}
    window = viewer.get(base_a, params={
        "since": (NOW - timedelta(hours=2, minutes=30)).isoformat(),
        "until": (NOW - timedelta(minutes=30)).isoformat()}).json()["items"]
    assert [i["name"] for i in window] == ["run-1", "run-2"]
    assert [i["name"] for i in other.get(base_b).json()["items"]] == ["nightly"]

    # bad input: clear 400s naming the field
    for params, field in (({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"),
                          ({"limit": "501"}, "limit"), ({"continue": "forged"}, "continue"),
                          ({"phase": "Running"}, "phase"), ({"phase": "bogus"}, "phase"),
                          ({"since": "yesterday"}, "since"), ({"workflow": "A_B"}, "workflow")):
        bad = viewer.get(base_a, params=params)
        assert bad.status_code == 400 and error_of(bad)["field"] == field, (params, bad.text)
    first = viewer.get(base_a, params={"limit": "2"}).json()["continue"]
    reused = viewer.get(base_a, params={"limit": "2", "phase": "Failed", "continue": first})
    assert reused.status_code == 400 and "other filters" in error_of(reused)["message"]
    stolen = other.get(base_b, params={"limit": "2", "continue": first})  # A's token in B
    assert stolen.status_code == 400 and error_of(stolen)["field"] == "continue"

    # --- one run: by name (the newest), by uid; B's never ---------------------------------
    got = viewer.get(f"{base_a}/nightly").json()
    assert got["uid"] == second_uid and got["namespace"] == a and got["phase"] == "Succeeded"
    assert [(x["step"], x["attempt"], x["exitCode"]) for x in got["attempts"]] == [
        ("extract", 1, 3), ("extract", 2, 0), ("load", 1, 0)]
    assert [s["uid"] for s in got["sameName"]] == [second_uid, first_uid]
    older = viewer.get(f"{base_a}/nightly", params={"uid": first_uid}).json()
    assert older["uid"] == first_uid and older["phase"] == "Failed"
    # B's run of the same name, asked for by its uid in A: a 404 like any unknown run
    for path, params in ((f"{base_a}/nightly", {"uid": theirs[1]["uid"]}),
                         (f"{base_a}/nightly/logs", {"uid": theirs[1]["uid"]}),
                         (f"{base_a}/no-such-run", {}), (f"{base_a}/no-such-run/logs", {})):
        missing = viewer.get(path, params=params)
        assert missing.status_code == 404, (path, missing.text)
        assert "no archived run" in error_of(missing)["message"], missing.text
        assert "B's private" not in missing.text
        assert json.dumps(theirs[1]["params"]) not in missing.text
    assert viewer.get(f"{base_b}/nightly").status_code == 403
    assert other.get(f"{base_b}/nightly").json()["params"] == {"secret": "b"}
    assert nobody.get(f"{base_a}/nightly").status_code == 403
    assert viewer.get(f"{base_a}/nightly", params={"uid": "x' OR 1=1 --"}).status_code == 400

    # --- logs: get pods/log as well ------------------------------------------------------
    logs = viewer.get(f"{base_a}/nightly/logs").json()
    assert logs["run"]["uid"] == second_uid
    assert [(x["step"], x["attempt"], x["text"]) for x in logs["items"]] == [
        ("extract", 2, "second try\nrows: 42\n"), ("load", 1, "loaded\n")]
    one = viewer.get(f"{base_a}/nightly/logs", params={"step": "extract", "attempt": "1"})
    assert [x["text"] for x in one.json()["items"]] == ["first try\n"]
    text = viewer.get(f"{base_a}/nightly/steps/extract/logs")
    assert text.status_code == 200 and text.text == "second try\nrows: 42\n"
    assert text.headers["content-type"].startswith("text/plain")
    assert viewer.get(f"{base_a}/nightly/steps/extract/logs",
                      params={"uid": first_uid}).text == "the older run's log\n"
    no_step = viewer.get(f"{base_a}/nightly/steps/nope/logs")
    assert no_step.status_code == 404 and error_of(no_step)["field"] == "step"
    assert viewer.get(f"{base_a}/nightly/logs", params={"attempt": "0"}).status_code == 400
    runs_only = api(server, team.runs_only_a)
    assert runs_only.get(f"{base_a}/nightly").status_code == 200
    refused = runs_only.get(f"{base_a}/nightly/logs")
    assert refused.status_code == 403 and "pods/log" in error_of(refused)["message"]
    assert viewer.get(f"{base_b}/nightly/logs").status_code == 403
    assert other.get(f"{base_b}/nightly/steps/extract/logs").text == "B's private log\n"


def test_no_archive_configured_is_a_clear_501(cluster: ClusterUnderTest, crds: None,
                                              team: Team, tmp_path: Path) -> None:
    bare = Server(cluster.kubeconfig, None, tmp_path / "web.log")
    try:
        got = api(bare, team.viewer_a).get(f"/api/v1/namespaces/{team.a}/archive/runs")
        assert got.status_code == 501, got.text
        assert "not configured" in error_of(got)["message"]
        assert "TASKFORGE_ARCHIVE_URL" in error_of(got)["message"]
    finally:
        bare.stop()


def _kubeconfig(cluster: ClusterUnderTest, token: str, path: Path, namespace: str) -> Path:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    config["users"] = [{"name": "sa", "user": {"token": token}}]
    config["contexts"] = [{"name": "sa", "context": {"cluster": context["context"]["cluster"],
                                                     "user": "sa", "namespace": namespace}}]
    config["current-context"] = "sa"
    path.write_text(yaml.safe_dump(config))
    return path


def tf(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(kubeconfig.parent), "COLUMNS": "200"}
    return subprocess.run([str(CLI), "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=60, check=False, env=env)


def test_cli_reads_the_archive_through_the_api(
    server: Server, team: Team, seeded_url: str, cluster: ClusterUnderTest, tmp_path: Path,
) -> None:
    a, b = team.a, team.b
    (_, run), (_, other) = run_record(a, "gone"), run_record(b, "gone-b")
    seed(seeded_url, [("run", run), ("run", other),
                      *attempt_records(run["uid"], "say", 1, "hello from the archive\n")])
    viewer = _kubeconfig(cluster, team.viewer_a, tmp_path / "viewer.kubeconfig", a)
    runs_only = _kubeconfig(cluster, team.runs_only_a, tmp_path / "runs.kubeconfig", a)
    at = ("--server", server.url)

    got = tf(viewer, "get", "gone", *at)
    assert got.returncode == 0, got.stderr
    assert "from the run archive, through the API" in got.stderr
    assert "Succeeded" in got.stdout and "say" in got.stdout
    logs = tf(viewer, "logs", "gone", "say", *at)
    assert logs.returncode == 0 and logs.stdout == "hello from the archive\n", logs
    assert "from the run archive" in logs.stderr
    listed = tf(viewer, "list", "runs", "--archived", "-o", "json", *at)
    assert listed.returncode == 0, listed.stderr
    assert [i["name"] for i in json.loads(listed.stdout)["items"]] == ["gone"]
    assert "from the run archive" in listed.stderr

    # another namespace: the API refuses it; -A is the admin path's
    refused = tf(viewer, "list", "runs", "--archived", "-n", b, *at)
    assert refused.returncode == 1 and "may not list workflowruns" in refused.stderr
    assert "gone-b" not in refused.stdout + refused.stderr
    everyone = tf(viewer, "list", "runs", "--archived", "-A", *at)
    assert everyone.returncode == 1 and "--archive-url" in everyone.stderr
    # may read runs but not pod logs: the cluster's "not found", with the API's refusal as
    # the reason the archive was not read
    shown = tf(runs_only, "get", "gone", *at)
    assert shown.returncode == 0 and "from the run archive" in shown.stderr, shown.stderr
    denied = tf(runs_only, "logs", "gone", *at)
    assert denied.returncode == 1 and "Traceback" not in denied.stderr, denied.stderr
    assert "not found" in denied.stderr and "may not get pods/log" in denied.stderr
    assert "hello from the archive" not in denied.stdout
    unknown = tf(viewer, "get", "never-was", *at)
    assert unknown.returncode == 1 and "not found" in unknown.stderr, unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1

    # the admin path: PostgreSQL directly, every namespace, marked as such
    admin = tf(viewer, "list", "runs", "--archived", "-A", "-o", "json",
               "--archive-url", seeded_url)
    assert admin.returncode == 0, admin.stderr
    assert {"gone", "gone-b"} <= {i["name"] for i in json.loads(admin.stdout)["items"]}
    assert "read directly from PostgreSQL (admin)" in admin.stderr
    admin_logs = tf(viewer, "logs", "gone", "--archive-url", seeded_url)
    assert admin_logs.returncode == 0 and "[say#1] hello from the archive" in admin_logs.stdout
    help_text = tf(viewer, "get", "--help").stdout
    assert "--archive-url" in help_text and "ADMIN" in help_text


def test_a_run_the_operator_archived_reads_back_through_the_api(
    kube: Kube, archive_url: str, cluster: ClusterUnderTest, tmp_path: Path, team: Team,
) -> None:
    kube.workflow("arch-api", {"steps": [
        {"name": "say", "script": {"language": "sh", "source": "echo archived via the API"}}]})
    name = kube.start_run("arch-api")
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    wait_gone(kube, name)
    kube.custom.delete_namespaced_custom_object(
        "taskforge.io", "v1alpha1", kube.namespace, "workflowruns", name)
    web = Server(cluster.kubeconfig, archive_url, tmp_path / "web.log")
    try:
        viewer = _kubeconfig(cluster, team.viewer_a, tmp_path / "viewer.kubeconfig",
                             kube.namespace)
        deadline = time.monotonic() + 60
        while (got := tf(viewer, "get", name, "--server", web.url)).returncode:
            assert time.monotonic() < deadline, got.stderr  # the writer's queue drains
            time.sleep(1)
        assert "from the run archive" in got.stderr and "Succeeded" in got.stdout
        assert run["metadata"]["uid"] in got.stdout
        logs = tf(viewer, "logs", name, "say", "--server", web.url)
        assert logs.returncode == 0, logs.stderr
        assert "archived via the API" in logs.stdout or "log unreadable" in logs.stderr
    finally:
        web.stop()
