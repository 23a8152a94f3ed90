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
import json
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from localcluster.testing import ClusterUnderTest
from taskforge.adapters.archive_reader import ArchiveReader

from tests.e2e.archive.apikit import (  # noqa: F401 - fixtures, used by name
    NOW,
    Server,
    Team,
    api,
    attempt_records,
    run_record,
    seed,
    seeded_url_fixture,
    server_fixture,
    team_fixture,
    tf,
)
from tests.e2e.archive.conftest import wait_gone
from tests.e2e.operator.conftest import Kube
from tests.e2e.proxy_kit import host_address, stand_in_service, user_kubeconfig
from tests.e2e.web.conftest import error_of

pytestmark = pytest.mark.local_agent


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


def test_cli_reads_the_archive_through_the_api(
    server: Server, team: Team, seeded_url: str, cluster: ClusterUnderTest, tmp_path: Path,
) -> None:
    a, b = team.a, team.b
    (_, run), (_, other) = run_record(a, "gone"), run_record(b, "gone-b")
    seed(seeded_url, [("run", run), ("run", other),
                      *attempt_records(run["uid"], "say", 1, "hello from the archive\n")])
    viewer = user_kubeconfig(cluster, team.viewer_a, tmp_path / "viewer.kubeconfig", a)
    runs_only = user_kubeconfig(cluster, team.runs_only_a, tmp_path / "runs.kubeconfig", a)
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


def test_cli_through_the_service_proxy_and_by_uid(
    team: Team, seeded_url: str, cluster: ClusterUnderTest, crds: None, tmp_path: Path,
) -> None:
    """The default path, as `taskforge dlq` takes it: the API server's service proxy to the
    UI Service, the kubeconfig's token; and --uid for a name two archived runs had."""
    address = host_address()
    if address is None:
        pytest.skip("no non-loopback address for the Service's Endpoints")
    a = team.a
    (_, old), (_, new) = (run_record(a, "dup", phase="Failed", finished=NOW - timedelta(days=1)),
                          run_record(a, "dup"))
    seed(seeded_url, [("run", old), ("run", new),
                      *attempt_records(old["uid"], "say", 1, "the old one\n", exit_code=1),
                      *attempt_records(new["uid"], "say", 1, "the new one\n")])
    web = Server(cluster.kubeconfig, seeded_url, tmp_path / "web.log", host="0.0.0.0")
    try:
        service = stand_in_service(cluster, a, address, web.port, "viewer")
        viewer = user_kubeconfig(cluster, team.viewer_a, tmp_path / "viewer.kubeconfig", a)
        at = ("--service", service)
        newest = tf(viewer, "get", "dup", *at)
        assert newest.returncode == 0, newest.stderr
        assert "from the run archive, through the API" in newest.stderr
        assert new["uid"] in newest.stdout and "Succeeded" in newest.stdout
        assert f"chosen with --uid: {old['uid']} (Failed" in newest.stderr
        older = tf(viewer, "get", "dup", "--uid", old["uid"], "-o", "json", *at)
        assert older.returncode == 0, older.stderr
        assert json.loads(older.stdout)["phase"] == "Failed"
        old_log = tf(viewer, "logs", "dup", "say", "--uid", old["uid"], *at)
        assert old_log.returncode == 0 and old_log.stdout == "the old one\n", old_log.stderr
        listed = tf(viewer, "list", "runs", "--archived", "--phase", "failed", "-o", "name", *at)
        assert listed.returncode == 0 and "workflowrun.taskforge.io/dup" in listed.stdout
        # without the proxy right: the cluster's "not found" alone (no API to ask)
        runs_only = user_kubeconfig(cluster, team.runs_only_a, tmp_path / "r.kubeconfig", a)
        quiet = tf(runs_only, "get", "dup", *at)
        assert quiet.returncode == 1 and "not found" in quiet.stderr, quiet.stderr
        assert "archive" not in quiet.stderr and len(quiet.stderr.strip().splitlines()) == 1
    finally:
        web.stop()


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
        viewer = user_kubeconfig(cluster, team.viewer_a, tmp_path / "viewer.kubeconfig",
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


def test_reader_pages_over_unfinished_rows_and_bounds_a_log_answer(seeded_url: str) -> None:
    """Keyset paging also walks runs with no finish time (sorted last), each once; a logs
    answer past its byte budget leaves the later texts out, marked `omitted`."""
    ns = f"reader-{uuid.uuid4().hex[:6]}"
    runs = [run_record(ns, f"r{i}", finished=NOW - timedelta(minutes=i)) for i in range(3)]
    for name in ("open-a", "open-b"):
        _, row = run_record(ns, name)
        runs.append(("run", {**row, "finished_at": None}))
    big = "x" * 1000 + "\n"
    logs = [r for step in ("s1", "s2", "s3")
            for r in attempt_records(runs[0][1]["uid"], step, 1, f"{step} " + big)]
    seed(seeded_url, [*runs, *logs])

    async def read() -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
        async with ArchiveReader(seeded_url) as reader:
            seen: list[str] = []
            after = None
            while True:
                items, after = await reader.list_page(ns, limit=1, after=after)
                seen += [i["name"] for i in items]
                if after is None:
                    return (seen, await reader.logs(ns, "r0", max_bytes=1500),
                            await reader.logs(ns, "r0"))
    seen, bounded, whole = asyncio.run(read())
    assert seen[:3] == ["r0", "r1", "r2"] and sorted(seen[3:]) == ["open-a", "open-b"]
    assert len(seen) == 5
    assert [(e["step"], e["text"][:3], bool(e.get("omitted"))) for e in bounded] == [
        ("s1", "s1 ", False), ("s2", "s2 ", False), ("s3", "", True)]
    assert all(e["text"].endswith("x\n") and not e.get("omitted") for e in whole)
