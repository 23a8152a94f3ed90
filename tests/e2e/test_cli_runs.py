"""The CLI on runs and workflows: `run`, `list`, `get`, `cancel`, `retry` (see cli_kit.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster.testing import ClusterUnderTest
from taskforge import GROUP
from taskforge.cli.main import app
from typer.testing import CliRunner

from tests.e2e.cli_kit import Cli, eventually, failed_status, install_crds, iso, pipeline_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def crds(cluster: ClusterUnderTest) -> ClusterUnderTest:
    return install_crds(cluster)


@pytest.fixture
def cli(crds: ClusterUnderTest, namespace: str) -> Iterator[Cli]:
    yield pipeline_cli(crds, namespace)


# --- run -------------------------------------------------------------------------------------


def test_run_creates_a_manual_run_with_typed_params(cli: Cli, tmp_path: Path) -> None:
    result = cli("run", "pipeline", "-p", "num=3", "-p", "version=1.10", "-p", "who='007'",
                 "-o", "json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    name = created["metadata"]["name"]
    assert name.startswith("pipeline-")
    stored = cli.run_object(name)
    assert stored["metadata"]["generateName"] == "pipeline-"
    assert stored["metadata"]["labels"]["taskforge.io/workflow"] == "pipeline"
    assert stored["spec"]["workflowRef"] == {"name": "pipeline"}
    assert stored["spec"]["trigger"] == {"type": "manual"}
    # a number, a string param kept verbatim (not 1.1), a quoted value kept a string
    assert stored["spec"]["params"] == {"num": 3, "version": "1.10", "who": "007"}

    param_file = tmp_path / "params.yaml"
    param_file.write_text("who: file\nnum: 5\n")
    result = cli("run", "pipeline", "--param-file", str(param_file), "-p", "num=6",
                 "--name", "fixed-name", "-o", "name")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "workflowrun.taskforge.io/fixed-name"
    assert cli.run_object("fixed-name")["spec"]["params"] == {"who": "file", "num": 6}


def test_run_refuses_bad_params_and_unknown_workflows(cli: Cli) -> None:
    for args, message in [
        (["pipeline", "-p", "num=many", "-p", "who=x"], "expects integer"),
        (["pipeline", "-p", "typo=1", "-p", "who=x"], "unknown param 'typo'"),
        (["pipeline"], "'who'"),
        (["nope"], f"workflows.taskforge.io 'nope' not found in namespace '{cli.namespace}'"),
    ]:
        result = cli("run", *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert json.loads(cli.kubectl("get", "workflowruns", "-o", "json"))["items"] == []


def test_run_watch_follows_until_the_run_ends(cli: Cli) -> None:
    proc = cli.popen("run", "pipeline", "-p", "who=w", "--watch", "-o", "json")
    try:
        name = eventually(
            lambda: cli.kubectl("get", "workflowruns", "-o", "name").strip().split("/")[-1],
            what="the run to be created",
        )
        time.sleep(0.5)
        cli.set_status(name, {"phase": "Running", "startedAt": iso(), "progress": "0/4"})
        now = iso()
        cli.set_status(name, {"phase": "Succeeded", "finishedAt": now, "progress": "4/4",
                              "steps": {s: {"phase": "Succeeded", "attempts": 1}
                                        for s in ("fetch", "transform", "report", "cleanup")}})
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    final = json.loads(out)
    assert final["metadata"]["name"] == name and final["status"]["phase"] == "Succeeded"


# --- list and get ------------------------------------------------------------------------------


def test_list_speaks_kubectl(cli: Cli) -> None:
    """-o name|wide, --no-headers, -l, --field-selector, --phase, short names, -w."""
    failed = cli.new_run()
    cli.set_status(failed, failed_status(iso()))
    pending = cli.new_run()
    cli.kubectl("label", "workflowrun", failed, "team=data")

    def names(*args: str) -> list[str]:
        result = cli("list", *args, "-o", "name")
        assert result.exit_code == 0, result.output
        return result.stdout.split()

    ref = "workflowrun.taskforge.io/"
    assert sorted(names("tfr")) == sorted([ref + failed, ref + pending])
    assert names("runs", "-l", "team=data") == [ref + failed]
    assert names("--phase", "Failed") == [ref + failed]
    assert names("--field-selector", f"metadata.name={pending}") == [ref + pending]
    assert names("tfw") == ["workflow.taskforge.io/pipeline"]
    plain = cli("list", "--no-headers").stdout
    assert "NAME" not in plain and failed in plain
    wide = cli("list", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-2:] == ["TRIGGER", "PARAMS"] and "manual" in wide[1]

    proc = cli.popen("list", "-w", "--no-headers")
    try:
        assert proc.stdout is not None
        seen = [proc.stdout.readline(), proc.stdout.readline()]
        assert {ln.split()[0] for ln in seen} == {failed, pending}
        later = cli.new_run()
        assert proc.stdout.readline().split()[0] == later
    finally:
        proc.kill()
        proc.communicate(timeout=30)



def test_list_runs_and_workflows(cli: Cli) -> None:
    done = cli.new_run()
    cli.set_status(done, failed_status(iso()))
    pending = cli.new_run()
    other = cli.new_run(workflowSpec={"steps": [{"name": "x", "log": {"message": "m"}}]},
                        workflowRef=None)
    cli.kubectl("label", "workflowrun", other, "taskforge.io/workflow=inline-one", "--overwrite")

    result = cli("list", "runs")
    assert result.exit_code == 0, result.output
    rows = {ln.split()[0]: ln.split() for ln in result.stdout.splitlines()[1:]}
    assert result.stdout.split()[:6] == ["NAME", "WORKFLOW", "PHASE", "PROGRESS", "DURATION",
                                         "AGE"]
    assert rows[done][1:4] == ["pipeline", "Failed", "4/4"]
    assert rows[pending][1:4] == ["pipeline", "Pending", "-"]

    plain = cli.new_run(labelled=False)  # as kubectl or a GitOps tool makes it
    only = cli("list", "--workflow", "pipeline")
    assert {done, pending, plain} <= set(only.stdout.split()) and other not in only.stdout
    assert cli("list", "--workflow", "inline-one").stdout.startswith("No runs found")

    data = json.loads(cli("list", "runs", "-o", "json").stdout)
    assert data["kind"] == "List" and {i["metadata"]["name"] for i in data["items"]} == {
        done, pending, other, plain}
    assert "managedFields" not in data["items"][0]["metadata"]

    wf = cli("list", "workflows")
    line = next(ln for ln in wf.stdout.splitlines() if ln.startswith("pipeline"))
    assert line.split()[1] == "4"  # three steps and one finally step
    assert line.split()[3] == "-"  # no operator has recorded a run yet
    # LAST RUN is what the operator records, whoever made the run (here: plain kubectl).
    cli.kubectl("patch", "workflow", "pipeline", "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"lastRun": plain}}))
    wf = cli("list", "workflows")
    line = next(ln for ln in wf.stdout.splitlines() if ln.startswith("pipeline"))
    assert line.split()[3:5] == [plain, "Pending"], line

    everywhere = cli("list", "runs", "-A", ns=False)
    assert everywhere.stdout.split()[0] == "NAMESPACE"
    assert any(ln.split()[:2] == [cli.namespace, done] for ln in everywhere.stdout.splitlines())

    assert yaml.safe_load(cli("list", "workflows", "-o", "yaml").stdout)["items"][0]["kind"] == (
        "Workflow")


def test_namespace_defaults_to_the_contexts(cli: Cli, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(cli.cluster.kubeconfig.read_text())
    cli.cluster.kubectl("config", "set-context", "--current", f"--namespace={cli.namespace}",
                        "--kubeconfig", str(kubeconfig))
    name = cli.new_run()
    result = CliRunner().invoke(app, ["list", "--kubeconfig", str(kubeconfig)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0 and name in result.stdout, result.output


def test_get_shows_steps_in_dag_order_with_details(cli: Cli) -> None:
    name = cli.new_run(params={"who": "me", "version": "1.10"})
    now = iso()
    cli.set_status(name, {
        "phase": "Running", "progress": "1/4", "startedAt": iso(-60),
        "params": {"who": "me", "version": "1.10", "num": 1},
        "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running",
                        "message": "1 of 4 steps done", "lastTransitionTime": now}],
        "steps": {
            "fetch": {"phase": "Succeeded", "attempts": 1, "exitCode": 0,
                      "startedAt": iso(-60), "finishedAt": iso(-58),
                      "outputs": {"status": 200, "body": {"id": 42}}},
            "transform": {"phase": "Retrying", "attempts": 2, "exitCode": 1,
                          "failure": "Failed", "message": "script exited 1",
                          "startedAt": iso(-50), "nextAttemptAt": iso(120)},
        },
    })
    result = cli("get", name)
    assert result.exit_code == 0, result.output
    out = result.stdout
    flat = " ".join(out.split())
    for words in (f"Run {name}", "Workflow pipeline", "Phase Running", "Progress 1/4",
                  'version="1.10"', "Condition Succeeded=Unknown Running 1 of 4 steps done"):
        assert words in flat, (words, out)
    # DAG order (fetch, transform, report), not spec order; finally steps last
    positions = [out.index(f" {s} ") for s in ("fetch", "transform", "report", "cleanup")]
    assert positions == sorted(positions), out
    assert out.index("finally") < out.index("cleanup")
    fetch = next(ln for ln in out.splitlines() if "✓ fetch" in ln)
    assert "Succeeded" in fetch and "1 attempt" in fetch and "exit 0" in fetch
    assert 'outputs: body={"id":42} status=200' in out
    transform = next(ln for ln in out.splitlines() if "transform" in ln and "Retrying" in ln)
    assert "2 attempts" in transform and "exit 1" in transform and "after fetch" in transform
    assert "script exited 1" in out and "next attempt at" in out

    data = yaml.safe_load(cli("get", name, "-o", "yaml").stdout)
    assert data["status"]["steps"]["transform"]["attempts"] == 2
    assert json.loads(cli("get", name, "-o", "json").stdout)["metadata"]["name"] == name
    assert cli("get", name, "-o", "name").stdout == f"workflowrun.{GROUP}/{name}\n"

    # -o wide: each step's Job and exact times; --no-headers: the step lines alone
    cli.set_status(name, {"steps": {"fetch": {"jobName": f"{name}-fetch-1"}}})
    wide = cli("get", name, "-o", "wide").stdout
    fetch = next(ln for ln in wide.splitlines() if "✓ fetch" in ln)
    assert f"job {name}-fetch-1" in fetch and "started " in fetch and "finished " in fetch, wide
    assert "Run " in wide  # still the whole view
    bare = cli("get", name, "--no-headers").stdout.splitlines()
    assert [ln.split()[1] for ln in bare] == ["fetch", "transform", "report", "cleanup"], bare
    assert not any(ln.startswith(("Run", "Steps", "Workflow")) for ln in bare), bare


# --- cancel, retry ---------------------------------------------------------------------------


def test_cancel_sets_spec_cancel_once_running(cli: Cli) -> None:
    name = cli.new_run()
    result = cli("cancel", name)
    assert result.exit_code == 0 and "cancel requested" in result.stdout
    assert cli.run_object(name)["spec"]["cancel"] is True

    done = cli.new_run()
    cli.set_status(done, {"phase": "Succeeded"})
    result = cli("cancel", done)
    assert result.exit_code == 0 and "already Succeeded" in result.stdout
    assert cli.run_object(done)["spec"]["cancel"] is False


def test_retry_reuses_what_succeeded(cli: Cli) -> None:
    old = cli.new_run(params={"who": "me", "num": 2})
    cli.set_status(old, failed_status(iso()))
    result = cli("retry", old, "-o", "json")
    assert result.exit_code == 0, result.output
    new = json.loads(result.stdout)
    stored = cli.run_object(new["metadata"]["name"])
    assert stored["metadata"]["labels"]["taskforge.io/retry-of"] == old
    assert stored["metadata"]["labels"]["taskforge.io/workflow"] == "pipeline"
    spec = stored["spec"]
    assert spec["trigger"] == {"type": "retry"}
    assert spec["workflowRef"] == {"name": "pipeline"}
    assert spec["params"] == {"who": "me", "num": 2}
    # fetch succeeded; transform failed and report was skipped (both run again); the
    # finally step always runs again
    assert spec["reuseSteps"] == [{"name": "fetch", "outputs": {"status": 200, "body": {"id": 42}}}]

    running = cli.new_run()
    cli.set_status(running, {"phase": "Running"})
    refused = cli("retry", running)
    assert refused.exit_code == 1 and "still Running" in refused.stderr


def test_retry_of_an_inline_run_keeps_its_spec(cli: Cli) -> None:
    inline = {"steps": [{"name": "a", "log": {"message": "a"}},
                        {"name": "b", "dependsOn": ["a"], "log": {"message": "b"}}]}
    old = cli.new_run(workflowSpec=inline, workflowRef=None, params=None)
    cli.set_status(old, {"phase": "Cancelled", "steps": {
        "a": {"phase": "Succeeded", "attempts": 1, "outputs": {"n": 1}},
        "b": {"phase": "Cancelled", "attempts": 1}}})
    result = cli("retry", old, "-o", "name")
    assert result.exit_code == 0, result.output
    spec = cli.run_object(result.stdout.strip().split("/")[-1])["spec"]
    stored_inline = cli.run_object(old)["spec"]["workflowSpec"]  # with the CRD's defaults
    assert spec["workflowSpec"] == stored_inline and "workflowRef" not in spec
    assert spec["reuseSteps"] == [{"name": "a", "outputs": {"n": 1}}]



def test_retry_reuses_outputs_never_side_effects(cli: Cli) -> None:
    """A step whose effects do not outlive its run (`reuseOnRetry: false`) runs again, and so
    does everything downstream of a step that runs again; --no-reuse reuses nothing."""
    def log(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "dependsOn": list(deps), "log": {"message": name}, **extra}

    inline = {"steps": [log("prepare", reuseOnRetry=False), log("build", "prepare"),
                        log("deploy", "build"), log("lint")]}
    old = cli.new_run(workflowSpec=inline, workflowRef=None, params=None)
    ok = {"phase": "Succeeded", "attempts": 1, "outputs": {"ok": True}}
    cli.set_status(old, {"phase": "Failed", "steps": {
        "prepare": ok, "build": ok, "lint": ok, "deploy": {"phase": "Failed", "attempts": 1}}})
    result = cli("retry", old, "-o", "name")
    assert result.exit_code == 0, result.output
    spec = cli.run_object(result.stdout.strip().split("/")[-1])["spec"]
    assert spec["reuseSteps"] == [{"name": "lint", "outputs": {"ok": True}}]
    again = cli("retry", old, "--no-reuse", "-o", "name")
    assert again.exit_code == 0, again.output
    assert "reuseSteps" not in cli.run_object(again.stdout.strip().split("/")[-1])["spec"]
