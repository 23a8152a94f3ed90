"""Fixtures for the run archive's e2e tests: a real PostgreSQL and the real operator writing
to it (issue 18).

PostgreSQL is Debian's, started by the local cluster tooling like Redis
(hack/localcluster/postgres_server.py), once per session. The operator is the one of
tests/e2e/operator/conftest.py, started for this package with the archive's URL, a short
Job TTL (so logs must come from the archive once the Job and its pod are gone) and
retention every 2 s keeping 3 runs per workflow and 30 days.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from localcluster.postgres_server import PostgresServer
from psycopg.rows import dict_row

from tests.e2e.operator.conftest import (  # noqa: F401 - fixtures, used by name
    Kube,
    OperatorProcess,
    crds,
    kube,
    running_operator,
)

JOB_TTL_SECONDS = 3
RETENTION_RUNS = 3
RETENTION_DAYS = 30


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    if not PostgresServer.available():
        pytest.fail("PostgreSQL 15 is not installed (hack/setup.sh installs `postgresql`)")
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def new_database(postgres: PostgresServer) -> str:
    name = f"archive_{uuid.uuid4().hex[:8]}"
    postgres.psql(f"CREATE DATABASE {name}")
    return postgres.url_for(name)


@pytest.fixture(scope="package")
def archive_url(postgres: PostgresServer) -> str:
    return new_database(postgres)


@pytest.fixture(scope="package")
def operator(
    cluster: Any, crds: None, archive_url: str,  # noqa: F811 - crds is the imported fixture
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(cluster.kubeconfig, None, tmp_path_factory.mktemp("operator"))
    proc.extra_env = {
        "TASKFORGE_ARCHIVE_URL": archive_url,
        "TASKFORGE_JOB_TTL_SECONDS": str(JOB_TTL_SECONDS),
        "TASKFORGE_ARCHIVE_RETENTION_RUNS": str(RETENTION_RUNS),
        "TASKFORGE_ARCHIVE_RETENTION_DAYS": str(RETENTION_DAYS),
        "TASKFORGE_ARCHIVE_RETENTION_INTERVAL_SECONDS": "2",
    }
    proc.start()
    yield proc
    proc.stop()


class Archive:
    """Direct SQL over the archive database, for assertions."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.url, autocommit=True, row_factory=dict_row) as conn:
            return list(conn.execute(sql.encode(), args).fetchall())

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = check()
            except psycopg.Error:
                found = None
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"archive: {what} not there in {timeout}s")
            time.sleep(0.3)

    def run(self, namespace: str, name: str, timeout: float = 60) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            rows = self.rows("SELECT * FROM archived_runs WHERE namespace = %s AND name = %s",
                             namespace, name)
            return rows[0] if rows else None
        row: dict[str, Any] = self.wait(f"run {namespace}/{name}", found, timeout)
        return row

    def read(self, coro: Callable[[], Any]) -> Any:
        return asyncio.run(coro())


@pytest.fixture
def archive(archive_url: str) -> Archive:
    return Archive(archive_url)


def wait_gone(k: Kube, run: str, timeout: float = 60) -> None:
    """Until the run's Jobs and pods are deleted (the Job TTL, then the GC)."""
    deadline = time.monotonic() + timeout
    while k.jobs(run) or k.core.list_namespaced_pod(
            k.namespace, label_selector=f"taskforge.io/run={run}").items:
        if time.monotonic() > deadline:
            raise AssertionError(f"the Jobs/pods of {run} still exist after {timeout}s")
        time.sleep(0.5)

