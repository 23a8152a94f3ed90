"""The run archive end to end (issue 18): the real operator, a real PostgreSQL."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import time
from typing import Any

from localcluster.postgres_server import PostgresServer
from taskforge.adapters import archive_db
from taskforge.adapters.archive_reader import ArchiveReader
from taskforge.cli.archive import ARCHIVE_ENV
from taskforge.handlers.archiver import Archiver
from taskforge.handlers.config import ArchiveSettings
from taskforge.handlers.store import Store

from tests.e2e.archive.conftest import RETENTION_RUNS, Archive, new_database, wait_gone
from tests.e2e.cli_kit import CLI
from tests.e2e.operator.conftest import Kube
from tests.e2e.operator.stepkit import create_secret

SECRET = "hunter2-e2e-7Qz"


def _flaky_then_secret() -> dict[str, Any]:
    """A script step that fails its first attempt, then a container step (the user's image:
    no executor redacts its output) that prints a Secret."""
    return {"params": [{"name": "note"}], "steps": [
        {"name": "flaky", "retry": {"limit": 1, "backoff": {"type": "fixed", "delay": "1s"}},
         "script": {"language": "sh", "source": 'echo "hello from attempt $TASKFORGE_ATTEMPT"\n'
                    '[ "$TASKFORGE_ATTEMPT" -ge 2 ] || exit 3\n'}},
        {"name": "leak", "dependsOn": ["flaky"],
         "container": {
             "image": "python:3.11-slim", "command": ["python", "-c"],
             "args": ["import os\nprint('token is', os.environ['TOKEN'])\n"],
             "env": [{"name": "TOKEN",
                      "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}}}],
         }},
    ]}


def _all_text(archive: Archive, uid: str) -> str:
    """Everything the archive holds about a run, logs decompressed, as one string."""
    text = [str(r) for r in archive.rows("SELECT * FROM archived_runs WHERE uid = %s", uid)]
    text += [str(r) for r in archive.rows(
        "SELECT * FROM archived_attempts WHERE run_uid = %s", uid)]
    text += [gzip.decompress(r["content"]).decode() for r in archive.rows(
        "SELECT content FROM archived_logs WHERE run_uid = %s", uid)]
    return "\n".join(text)


def test_every_attempt_log_is_captured_before_the_job_ttl_removes_the_pod(
    kube: Kube, archive: Archive,
) -> None:
    """The executor's step logs, strictly (each holds the line it printed, no `note`): nine
    runs at once, their Jobs deleted 3 s after they end. First in the package on purpose:
    in a fresh operator the first log reads went through the kubernetes client, whose
    CoreV1Api is imported on first use (0.6 s of CPU under the import lock, 4-8 s under
    load), four at a time, and found the pods deleted (404): the flaky executor logs of
    issue 18's first tests."""
    names = []
    for w in range(3):  # three runs per workflow: the retention here keeps three
        kube.workflow(f"say{w}", {"steps": [
            {"name": "say", "script": {"language": "sh", "source": "echo line of $RUN",
                                       "env": [{"name": "RUN", "value": "{{ run.name }}"}]}}]})
    for w in range(3):
        names += [kube.start_run(f"say{w}") for _ in range(RETENTION_RUNS)]
    for name in names:
        assert kube.wait_run(name, timeout=120)["status"]["phase"] == "Succeeded"
    for name in names:
        archive.run(kube.namespace, name, timeout=60)
        (log,) = archive.wait(f"the log of {name}", lambda n=name: asyncio.run(
            _logs(archive.url, kube.namespace, n)), timeout=30)
        assert log["note"] is None and f"line of {name}\n" in log["text"], log


def test_run_archived_with_attempts_and_logs_after_the_ttl(kube: Kube, archive: Archive) -> None:
    create_secret(kube, "tok", {"token": SECRET})
    kube.workflow("arch", _flaky_then_secret())
    name = kube.start_run("arch", params={"note": "params are archived"})
    run = kube.wait_run(name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    uid = run["metadata"]["uid"]
    wait_gone(kube, name)  # the Job TTL (3 s) deleted the Jobs, the GC their pods

    row = archive.run(kube.namespace, name)
    assert row["uid"] == uid and row["workflow"] == "arch" and row["phase"] == "Succeeded"
    assert row["workflow_generation"] == 1 and row["trigger"] == "manual"
    assert row["pinned_spec"]["steps"][0]["name"] == "flaky"
    assert row["params"] == {"note": "params are archived"}
    assert row["started_at"] is not None and row["finished_at"] >= row["started_at"]
    every = {("flaky", 1), ("flaky", 2), ("leak", 1)}

    def all_attempts() -> dict[tuple[str, int], dict[str, Any]] | None:
        rows = {(a["step"], a["attempt"]): a for a in archive.rows(
            "SELECT * FROM archived_attempts WHERE run_uid = %s", uid)}
        logs = {(r["step"], r["attempt"]) for r in archive.rows(
            "SELECT step, attempt FROM archived_logs WHERE run_uid = %s", uid)}
        return rows if set(rows) == every and logs == every else None
    attempts = archive.wait("every attempt and its log", all_attempts, timeout=30)
    assert attempts["flaky", 1]["exit_code"] not in (0, None)
    assert attempts["flaky", 1]["reason"] == "Failed"
    assert attempts["flaky", 2]["exit_code"] == 0 and attempts["flaky", 2]["finished_at"]
    assert attempts["flaky", 2]["outputs"]["stdout"] == "hello from attempt 2\n"

    async def read() -> tuple[Any, Any, Any]:
        async with ArchiveReader(archive.url) as reader:
            return (await reader.get_run(kube.namespace, name),
                    await reader.logs(kube.namespace, name, "flaky", 1),
                    await reader.logs(kube.namespace, name))
    detail, first, latest = asyncio.run(read())
    assert [(a["step"], a["attempt"]) for a in detail["attempts"]] == [
        ("flaky", 1), ("flaky", 2), ("leak", 1)]
    assert {(log["step"], log["attempt"]) for log in latest} == {("flaky", 2), ("leak", 1)}
    # The container step's log, read from its pod before the TTL removed it, Secret redacted.
    leak = next(x for x in latest if x["step"] == "leak")
    assert leak["text"] == "token is [redacted]\n", leak
    # The executor's logs, whole, from their termination messages (no read of the pod).
    for got, expect in ((first[0], "hello from attempt 1"),
                        (next(x for x in latest if x["step"] == "flaky"), "hello from attempt 2")):
        assert got["note"] is None and f"\n{expect}\n" in got["text"], got
    # the Secret's value is nowhere in the archive
    assert SECRET not in _all_text(archive, uid)
    assert "[redacted]" in _all_text(archive, uid)

    # a run deleted from the cluster stays archived
    kube.custom.delete_namespaced_custom_object(
        "taskforge.io", "v1alpha1", kube.namespace, "workflowruns", name)
    time.sleep(1)
    assert archive.run(kube.namespace, name)["uid"] == uid
    _cli_reads_the_archive(kube, archive, name)


def _cli_reads_the_archive(kube: Kube, archive: Archive, name: str) -> None:
    """`taskforge get/logs/list --archived` fall back to the archive and say so."""
    def tf(*args: str, url: str | None = archive.url) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != ARCHIVE_ENV} | {"COLUMNS": "200"}
        env |= {ARCHIVE_ENV: url} if url else {}
        return subprocess.run([str(CLI), "--kubeconfig", str(kube.kubeconfig),
                               "-n", kube.namespace, *args],
                              capture_output=True, text=True, env=env, timeout=60, check=False)

    got = tf("get", name)
    assert got.returncode == 0 and "from the run archive" in got.stderr, got
    assert "Succeeded" in got.stdout and "flaky" in got.stdout and "leak" in got.stdout, got
    logs = tf("logs", name, "leak")
    assert logs.returncode == 0 and logs.stdout == "token is [redacted]\n", logs
    assert "from the run archive" in logs.stderr
    listed = tf("list", "runs", "--archived", "-o", "json")
    assert listed.returncode == 0, listed
    assert name in [i["name"] for i in json.loads(listed.stdout)["items"]]
    gone = tf("get", name, url=None)  # without the archive: the cluster's answer
    assert gone.returncode != 0 and "not found" in gone.stderr, gone


def test_database_outage_holds_no_run_back_and_loses_nothing(
    kube: Kube, archive: Archive, postgres: PostgresServer,
) -> None:
    kube.workflow("outage", {"steps": [
        {"name": "say", "script": {"language": "sh", "source": "echo run $RUN",
                                   "env": [{"name": "RUN", "value": "{{ run.name }}"}]}}]})
    postgres.stop()
    try:
        names = [kube.start_run("outage") for _ in range(3)]
        for name in names:  # every run finishes while the database is away
            assert kube.wait_run(name, timeout=60)["status"]["phase"] == "Succeeded"
    finally:
        postgres.start()
    for name in names:
        archive.run(kube.namespace, name, timeout=60)
        logs = asyncio.run(_logs(archive.url, kube.namespace, name))
        assert f"\nrun {name}\n" in logs[0]["text"], logs


async def _logs(url: str, namespace: str, name: str) -> list[dict[str, Any]]:
    async with ArchiveReader(url) as reader:
        return await reader.logs(namespace, name)


def test_retention_keeps_the_newest_runs_per_workflow_and_drops_old_ones(
    kube: Kube, archive: Archive,
) -> None:
    old_uid = f"old-{kube.namespace}"
    archive.rows(
        "INSERT INTO archived_runs (uid, namespace, name, workflow, phase, finished_at)"
        " VALUES (%s, %s, 'ancient', 'other', 'Succeeded', now() - interval '40 days')"
        " RETURNING uid", old_uid, kube.namespace)
    archive.rows("INSERT INTO archived_attempts (run_uid, step, attempt) VALUES (%s, 'a', 1)"
                 " RETURNING run_uid", old_uid)
    kube.workflow("keep", {"steps": [{"name": "s", "log": {"message": "hi"}}]})
    names = []
    for _ in range(RETENTION_RUNS + 2):
        names.append(kube.start_run("keep"))
        kube.wait_run(names[-1])
    ns = kube.namespace

    def settled() -> bool:
        rows = archive.rows("SELECT name FROM archived_runs WHERE namespace = %s"
                            " AND workflow = 'keep'", ns)
        return {r["name"] for r in rows} == set(names[-RETENTION_RUNS:])
    archive.wait("retention of runs per workflow", settled, timeout=30)
    assert not archive.rows("SELECT uid FROM archived_runs WHERE uid = %s", old_uid)
    assert not archive.rows("SELECT run_uid FROM archived_attempts WHERE run_uid = %s", old_uid)
    gone = archive.rows("SELECT uid FROM archived_runs WHERE namespace = %s AND name = %s",
                        ns, names[0])
    assert not gone


def test_migrations_from_empty_and_rerun_idempotent(postgres: PostgresServer) -> None:
    url = new_database(postgres)

    async def migrate_twice_in_parallel() -> list[list[int]]:
        conns = [await archive_db.connect(url) for _ in range(2)]
        try:
            first = await asyncio.gather(*(archive_db.migrate(c) for c in conns))
            again = await archive_db.migrate(conns[0])
            return [*first, again]
        finally:
            for c in conns:
                await c.close()

    a, b, again = asyncio.run(migrate_twice_in_parallel())
    versions = [m.version for m in archive_db.migrations()]
    assert sorted([a, b], key=len) == [[], versions]  # the advisory lock: one applied them
    assert again == []
    tables = {r["tablename"] for r in Archive(url).rows(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"schema_migrations", "archived_runs", "archived_attempts", "archived_logs"} <= tables
    assert [r["version"] for r in Archive(url).rows(
        "SELECT version FROM schema_migrations ORDER BY version")] == versions



def test_a_run_failed_for_its_size_is_archived_with_its_reason(
    kube: Kube, archive: Archive,
) -> None:
    """A run the API server cannot store fails outside the plan (StatusTooLarge, a minimal
    status without its spec, steps and params): the archive keeps it all the same, with
    the reason, the message, and the spec and params the status had to drop."""
    steps = [{"name": f"post-{i}", "http": {"method": "POST", "url": "http://127.0.0.1:9/",
                                           "json": {"blob": "j" * 190_000}}} for i in range(2)]
    kube.apply({"apiVersion": "taskforge.io/v1alpha1", "kind": "WorkflowRun",
                "metadata": {"name": "oversized"},
                "spec": {"workflowSpec": {"params": [{"name": "blob", "type": "string"}],
                                          "steps": steps},
                         "params": {"blob": "p" * 450_000}}})
    run = kube.wait_run("oversized", timeout=60)
    assert run["status"]["phase"] == "Failed", run["status"]
    row = archive.run(kube.namespace, "oversized")
    assert row["uid"] == run["metadata"]["uid"] and row["phase"] == "Failed"
    (cond,) = [c for c in row["conditions"] if c["type"] == "Succeeded"]
    assert cond["reason"] == "StatusTooLarge" and row["message"] == cond["message"], row
    assert row["finished_at"] is not None
    assert [s["name"] for s in row["pinned_spec"]["steps"]] == ["post-0", "post-1"]
    assert row["params"] == {"blob": "p" * 450_000}
    assert not archive.rows("SELECT * FROM archived_attempts WHERE run_uid = %s", row["uid"])


def test_a_run_failed_as_invalid_is_archived_whatever_its_fields_hold(
    kube: Kube, archive: Archive,
) -> None:
    """The archiver's side of InvalidSpec (handlers/failures.py calls it as for the size):
    a hostile body and status (fields of the wrong type, bad times, NUL characters) still
    give a run record, its running attempt is archived as Cancelled; and a record the
    database refuses is dropped alone, not retried forever in front of the others."""
    ns, uid = kube.namespace, f"invalid-{kube.namespace}"
    body: dict[str, Any] = {
        "metadata": {"name": "invalid", "namespace": ns, "uid": uid,
                     "creationTimestamp": "2026-12-01T00:00:00Z",
                     "annotations": {"taskforge.io/creator": 7}},
        "spec": {"trigger": "cron", "workflowRef": {"name": ["x"]}, "params": {"p": "a\x00b"}},
        "status": {"phase": "Running", "workflowSpec": ["not", "a", "spec"],
                   "workflow": {"name": "wf", "generation": "abc"}, "startedAt": "yesterday",
                   "steps": {"s": {"phase": "Running", "attempts": 1,
                                   "startedAt": "2026-12-01T00:00:01Z"},
                             "t": "junk", "u": {"phase": "Running", "attempts": "2"}}}}
    written = {"phase": "Failed", "message": "spec.steps.0: bad\x00", "observedGeneration": 1,
               "finishedAt": "2026-12-01T00:00:05Z",
               "conditions": [{"type": "Succeeded", "status": "False", "reason": "InvalidSpec",
                               "message": "spec.steps.0: bad"}]}

    async def archive_directly() -> None:
        archiver = Archiver(ArchiveSettings(url=archive.url), Store())
        archiver.put([("run", {"uid": f"poison-{ns}", "namespace": ns, "name": "poison",
                               "phase": "Failed", "finished_at": "not a time"})])
        archiver.after_failure(ns, body, written)
        await archiver.close(grace=30)
    asyncio.run(archive_directly())

    row = archive.run(ns, "invalid", timeout=5)
    assert (row["uid"], row["phase"], row["trigger"]) == (uid, "Failed", "manual")
    assert (row["workflow"], row["workflow_generation"], row["creator"]) == ("wf", None, None)
    assert row["started_at"] is None and row["finished_at"] is not None
    assert row["conditions"][0]["reason"] == "InvalidSpec"
    assert row["params"] == {"p": "a\ufffdb"} and row["message"] == "spec.steps.0: bad\ufffd"
    (attempt,) = archive.rows("SELECT * FROM archived_attempts WHERE run_uid = %s", uid)
    assert (attempt["step"], attempt["attempt"], attempt["reason"]) == ("s", 1, "Cancelled")
    (log,) = archive.rows("SELECT * FROM archived_logs WHERE run_uid = %s", uid)
    assert log["note"] == "no pod: log not captured"
    assert not archive.rows("SELECT * FROM archived_runs WHERE uid = %s", f"poison-{ns}")
