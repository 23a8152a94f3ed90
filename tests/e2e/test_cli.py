"""The `taskforge` CLI against a real apiserver (no operator).

What the operator would write into `WorkflowRun.status` is written here by the test,
through the status subresource: that is test data standing in for progress, so `get`,
`list`, `watch` and `retry` can be checked without running any step. `logs` reads real
pods: plain Jobs with the step labels, run by the cluster's node (the local agent, or any
node that can pull python:3.11-slim). Most commands run in-process through typer's
CliRunner (fast); a few go through the installed console script to check what a person
sees: exit codes, one-line errors, no tracebacks.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster.testing import ClusterUnderTest
from taskforge.adapters.deadletter import DeadLetterStream
from taskforge.adapters.redis_client import RedisConnection, RedisSettings
from taskforge.cli.main import app
from typer.testing import CliRunner, Result

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "taskforge"
CRD_NAMES = ("workflows.taskforge.io", "workflowruns.taskforge.io")

WORKFLOW = """\
apiVersion: taskforge.io/v1alpha1
kind: Workflow
metadata:
  name: pipeline
spec:
  params:
    - {name: num, type: integer, default: 1}
    - {name: version, type: string}
    - {name: who, type: string, required: true}
  steps:
    - name: report
      dependsOn: [transform]
      log: {message: "done {{ params.who }}"}
    - name: transform
      dependsOn: [fetch]
      log: {message: transform}
    - name: fetch
      http: {url: "https://example.com/items"}
  finally:
    - name: cleanup
      log: {message: bye}
"""


def _iso(delta: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _eventually(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def crds(cluster: ClusterUnderTest) -> ClusterUnderTest:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))

    def served() -> bool:
        wait = cluster.kubectl("wait", "--for=condition=established", "--timeout=30s",
                               *(f"crd/{n}" for n in CRD_NAMES), check=False)
        return wait.returncode == 0 and cluster.kubectl(
            "get", "workflowruns.taskforge.io", "-A", check=False
        ).returncode == 0

    _eventually(served, what="the CRDs to be served")
    return cluster


class Cli:
    """The CLI bound to one cluster and namespace, plus test-data helpers."""

    def __init__(self, cluster: ClusterUnderTest, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def __call__(self, *args: str, ns: bool = True, input: str | None = None) -> Result:
        argv = ["--kubeconfig", str(self.cluster.kubeconfig)]
        argv += ["-n", self.namespace] if ns else []
        result = CliRunner().invoke(app, [*argv, *args], input=input, env={"COLUMNS": "200"})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def script(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """The installed console script, as a person runs it."""
        argv = [str(CLI), "--kubeconfig", str(self.cluster.kubeconfig), "-n", self.namespace]
        return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout,
                              check=False, env={**os.environ, "COLUMNS": "200"})

    def popen(self, *args: str) -> subprocess.Popen[str]:
        argv = [str(CLI), "--kubeconfig", str(self.cluster.kubeconfig), "-n", self.namespace]
        return subprocess.Popen([*argv, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "COLUMNS": "200"})

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.cluster.kubectl(*args, "-n", self.namespace, input=input).stdout

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    def run_object(self, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", "workflowrun", name, "-o", "json")))

    def set_status(self, name: str, status: dict[str, Any]) -> None:
        """What the operator would write: a merge patch of the status subresource."""
        self.kubectl("patch", "workflowrun", name, "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": status}))

    def new_run(self, **spec: Any) -> str:
        """A run of `pipeline` (params who=me) unless `spec` says otherwise; None drops a key."""
        fields = {"workflowRef": {"name": "pipeline"}, "params": {"who": "me"}, **spec}
        body = {
            "apiVersion": "taskforge.io/v1alpha1", "kind": "WorkflowRun",
            "metadata": {"generateName": "pipeline-",
                         "labels": {"taskforge.io/workflow": "pipeline"}},
            "spec": {k: v for k, v in fields.items() if v is not None},
        }
        out = self.kubectl("create", "-f", "-", "-o", "name", input=json.dumps(body))
        return out.strip().split("/")[-1]


@pytest.fixture
def cli(crds: ClusterUnderTest, namespace: str) -> Iterator[Cli]:
    helper = Cli(crds, namespace)
    helper.apply(WORKFLOW)
    yield helper


def failed_status(now: str) -> dict[str, Any]:
    """A run where fetch succeeded, transform failed after retries, report was skipped."""
    return {
        "phase": "Failed", "progress": "4/4", "startedAt": _iso(-90), "finishedAt": now,
        "message": "step transform failed",
        "conditions": [{"type": "Succeeded", "status": "False", "reason": "StepFailed",
                        "message": "step transform failed", "lastTransitionTime": now}],
        "steps": {
            "fetch": {"phase": "Succeeded", "attempts": 1, "exitCode": 0,
                      "startedAt": _iso(-90), "finishedAt": _iso(-80),
                      "outputs": {"status": 200, "body": {"id": 42}}},
            "transform": {"phase": "Failed", "attempts": 3, "exitCode": 1, "failure": "Failed",
                          "message": "script exited 1", "startedAt": _iso(-80),
                          "finishedAt": now},
            "report": {"phase": "Skipped"},
            "cleanup": {"phase": "Succeeded", "attempts": 1, "exitCode": 0},
        },
    }


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
        (["nope"], f"workflow 'nope' not found in namespace '{cli.namespace}'"),
    ]:
        result = cli("run", *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert json.loads(cli.kubectl("get", "workflowruns", "-o", "json"))["items"] == []


def test_run_watch_follows_until_the_run_ends(cli: Cli) -> None:
    proc = cli.popen("run", "pipeline", "-p", "who=w", "--watch", "-o", "json")
    try:
        name = _eventually(
            lambda: cli.kubectl("get", "workflowruns", "-o", "name").strip().split("/")[-1],
            what="the run to be created",
        )
        time.sleep(0.5)
        cli.set_status(name, {"phase": "Running", "startedAt": _iso(), "progress": "0/4"})
        now = _iso()
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


def test_list_runs_and_workflows(cli: Cli) -> None:
    done = cli.new_run()
    cli.set_status(done, failed_status(_iso()))
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

    only = cli("list", "-w", "inline-one")
    assert other in only.stdout and done not in only.stdout

    data = json.loads(cli("list", "runs", "-o", "json").stdout)
    assert data["kind"] == "List" and {i["metadata"]["name"] for i in data["items"]} == {
        done, pending, other}
    assert "managedFields" not in data["items"][0]["metadata"]

    wf = cli("list", "workflows")
    line = next(ln for ln in wf.stdout.splitlines() if ln.startswith("pipeline"))
    assert line.split()[1] == "4"  # three steps and one finally step
    assert pending in line or other in line or done in line  # the newest run of it

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
    now = _iso()
    cli.set_status(name, {
        "phase": "Running", "progress": "1/4", "startedAt": _iso(-60),
        "params": {"who": "me", "version": "1.10", "num": 1},
        "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running",
                        "message": "1 of 4 steps done", "lastTransitionTime": now}],
        "steps": {
            "fetch": {"phase": "Succeeded", "attempts": 1, "exitCode": 0,
                      "startedAt": _iso(-60), "finishedAt": _iso(-58),
                      "outputs": {"status": 200, "body": {"id": 42}}},
            "transform": {"phase": "Retrying", "attempts": 2, "exitCode": 1,
                          "failure": "Failed", "message": "script exited 1",
                          "startedAt": _iso(-50), "nextAttemptAt": _iso(120)},
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


# --- watch, cancel, retry ------------------------------------------------------------------------


@pytest.mark.parametrize(("phase", "code"), [("Succeeded", 0), ("Failed", 1)])
def test_watch_exits_with_the_runs_outcome(cli: Cli, phase: str, code: int) -> None:
    name = cli.new_run()
    proc = cli.popen("watch", name)
    try:
        time.sleep(1.5)  # let it start watching; updates then arrive as watch events
        cli.set_status(name, {"phase": "Running", "startedAt": _iso(), "progress": "0/4"})
        cli.set_status(name, {"phase": phase, "finishedAt": _iso(), "progress": "4/4"})
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert f"Phase {phase}" in " ".join(out.split()) and "Traceback" not in err


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
    cli.set_status(old, failed_status(_iso()))
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


# --- logs ------------------------------------------------------------------------------------


def _step_job(cli: Cli, run: str, step: str, attempt: int, script: str) -> None:
    labels = {"taskforge.io/workflow": "pipeline", "taskforge.io/run": run,
              "taskforge.io/step": step, "taskforge.io/attempt": str(attempt)}
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{run}-{step}-{attempt}", "labels": labels},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": labels},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "step", "image": "python:3.11-slim",
                "command": ["python", "-c", script]}]}}},
    }
    cli.apply(json.dumps(job))


def _jobs_done(cli: Cli, count: int) -> bool:
    pods = json.loads(cli.kubectl("get", "pods", "-o", "json"))["items"]
    phases = [p.get("status", {}).get("phase") for p in pods]
    return len(phases) == count and all(ph in ("Succeeded", "Failed") for ph in phases)


def test_logs_of_steps_and_attempts(cli: Cli) -> None:
    run = cli.new_run()
    cli.set_status(run, {"phase": "Running"})
    _step_job(cli, run, "fetch", 1, "print('fetch try 1')")
    _step_job(cli, run, "fetch", 2, "print('fetch try 2'); print('[bold]kept[/bold]')")
    _step_job(cli, run, "transform", 1, "import sys; print('transform out'); sys.exit(3)")
    _eventually(lambda: _jobs_done(cli, 3), timeout=120, what="the step pods to finish")

    every = cli("logs", run)
    assert every.exit_code == 0, every.output
    lines = every.stdout.splitlines()
    # latest attempt per step, in DAG order, prefixed by the step (and attempt when > 1)
    assert [ln.split()[0] for ln in lines] == ["[fetch#2]", "[fetch#2]", "[transform]"]
    assert lines[0].endswith("fetch try 2") and lines[1].endswith("[bold]kept[/bold]")
    assert lines[2].endswith("transform out")

    one = cli("logs", run, "fetch", "--attempt", "1")
    assert one.exit_code == 0 and one.stdout == "fetch try 1\n"

    skipped = cli("logs", run, "report")
    assert skipped.exit_code == 1 and "no pod for step 'report'" in skipped.stderr
    unknown = cli("logs", run, "zzz")
    assert unknown.exit_code == 1 and "has no step 'zzz'" in unknown.stderr


def test_logs_follow_streams_until_the_run_ends(cli: Cli) -> None:
    run = cli.new_run()
    cli.set_status(run, {"phase": "Running"})
    _step_job(cli, run, "fetch", 1,
              "import time\nfor i in range(3):\n print('tick', i, flush=True); time.sleep(1)")
    proc = cli.popen("logs", run, "-f")
    try:
        # a later step appears while following
        time.sleep(2)
        _step_job(cli, run, "transform", 1, "print('late step')")
        _eventually(lambda: _jobs_done(cli, 2), timeout=120, what="the step pods to finish")
        cli.set_status(run, {"phase": "Succeeded"})
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = [tuple(ln.split(maxsplit=1)) for ln in out.splitlines()]
    # streams interleave across steps, but each step's lines come in order
    assert [text for step, text in lines if step == "[fetch]"] == ["tick 0", "tick 1", "tick 2"]
    assert [text for step, text in lines if step == "[transform]"] == ["late step"]
    assert len(lines) == 4


# --- errors ----------------------------------------------------------------------------------


def test_errors_are_one_line_with_exit_code_1(cli: Cli, tmp_path: Path) -> None:
    missing = cli.script("get", "nope")
    assert missing.returncode == 1
    assert missing.stderr == f"error: run 'nope' not found in namespace '{cli.namespace}'\n"

    dead = tmp_path / "dead.kubeconfig"
    config = yaml.safe_load(cli.cluster.kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = "https://127.0.0.1:1"
    dead.write_text(yaml.safe_dump(config))
    unreachable = subprocess.run(
        [str(CLI), "--kubeconfig", str(dead), "list"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("error: cannot reach the Kubernetes API at "
                                         "https://127.0.0.1:1")
    assert len(unreachable.stderr.splitlines()) == 1

    no_config = cli.script("list", "--kubeconfig", str(tmp_path / "none"))
    assert no_config.returncode == 1 and "does not exist" in no_config.stderr
    for proc in (missing, unreachable, no_config):
        assert "Traceback" not in proc.stderr


# --- dead letters ------------------------------------------------------------------------------


def test_dlq_list_show_replay_purge(cli: Cli, redis_server: Any) -> None:
    prefix = f"cli-{uuid.uuid4().hex[:8]}:"
    settings = RedisSettings(url=redis_server.url, prefix=prefix)

    async def ship() -> str:
        conn = RedisConnection(settings)
        try:
            return await DeadLetterStream(conn).ship({
                "id": "uid-1/transform", "workflow": "pipeline", "namespace": cli.namespace,
                "run": "pipeline-old", "step": "transform", "params": {"who": "dlq"},
                "error": "script exited 1", "attempts": 3, "failedAt": _iso(-30),
            })
        finally:
            await conn.aclose()

    sid = asyncio.run(ship())
    redis = ["--redis-url", redis_server.url, "--redis-prefix", prefix]

    listed = cli("dlq", "list", *redis)
    assert listed.exit_code == 0, listed.output
    assert sid in listed.stdout and "transform" in listed.stdout
    shown = json.loads(cli("dlq", "show", sid, *redis, "-o", "json").stdout)
    assert shown["params"] == {"who": "dlq"} and shown["attempts"] == 3

    replayed = cli("dlq", "replay", sid, *redis, ns=False)
    assert replayed.exit_code == 0, replayed.output
    new = replayed.stdout.split()[1]
    spec = cli.run_object(new)["spec"]
    assert spec["trigger"] == {"type": "replay"} and spec["params"] == {"who": "dlq"}
    assert json.loads(cli("dlq", "list", *redis, "-o", "json").stdout)[0]["replayed_as"] == new

    refused = cli("dlq", "purge", "--all", *redis, input="")
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    assert cli("dlq", "purge", sid, *redis).exit_code == 0
    gone = cli("dlq", "show", sid, *redis)
    assert gone.exit_code == 1 and "no dead-letter entry" in gone.stderr
    assert cli("dlq", "purge", "--all", "--yes", *redis).stdout == "purged 0 entries\n"


def test_dlq_without_redis_is_a_one_line_error(cli: Cli) -> None:
    result = cli("dlq", "list", "--redis-url", "redis://127.0.0.1:1/0")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: Redis at redis://127.0.0.1:1/0 unreachable")
    assert len(result.stderr.splitlines()) == 1

