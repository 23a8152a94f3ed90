"""Shared parts of the run archive's API and UI tests (test_archive_api.py,
test_archive_ui.py): the real web server pointed at an archive database, seeding that
database with the archive's own writer, users with Roles in one namespace only, the CLI.
Not a test module; its fixtures are imported by name by the test modules."""

from __future__ import annotations

import asyncio
import gzip
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
from kubernetes import client
from localcluster.postgres_server import PostgresServer
from localcluster.testing import ClusterUnderTest
from localcluster.webserver import start_web_server, stop_web_server
from taskforge.adapters import archive_db

from tests.e2e.archive.conftest import new_database
from tests.e2e.cli_kit import CLI
from tests.e2e.web.conftest import VIEW_RULES, _rbac

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
    def __init__(self, kubeconfig: Path, archive_url: str | None, log: Path,
                 host: str = "127.0.0.1") -> None:
        self.port = port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k != "TASKFORGE_ARCHIVE_URL"}
        env |= {"KUBECONFIG": str(kubeconfig), "TASKFORGE_UI_PORT": str(port),
                "TASKFORGE_UI_HOST": host}
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


@pytest.fixture(scope="module", name="seeded_url")
def seeded_url_fixture(postgres: PostgresServer) -> str:
    url = new_database(postgres)
    _migrate(url)
    return url


@pytest.fixture(scope="module", name="server")
def server_fixture(cluster: ClusterUnderTest, crds: None, seeded_url: str,
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


@pytest.fixture(name="team")
def team_fixture(cluster: ClusterUnderTest, namespace: str) -> Iterator[Team]:
    t = Team(cluster, namespace)
    yield t
    t.delete()


def api(server: Server, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)



def tf(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(kubeconfig.parent), "COLUMNS": "200"}
    return subprocess.run([str(CLI), "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=60, check=False, env=env)
