"""The CLI's errors (one line, exit code 1, no traceback) and the `dlq` commands (see
cli_kit.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster.testing import ClusterUnderTest
from taskforge import GROUP
from taskforge.adapters.deadletter import DeadLetterStream
from taskforge.adapters.redis_client import RedisConnection, RedisSettings

from tests.e2e.cli_kit import CLI, Cli, install_crds, iso, pipeline_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def crds(cluster: ClusterUnderTest) -> ClusterUnderTest:
    return install_crds(cluster)


@pytest.fixture
def cli(crds: ClusterUnderTest, namespace: str) -> Iterator[Cli]:
    yield pipeline_cli(crds, namespace)


# --- errors ----------------------------------------------------------------------------------


def test_errors_are_one_line_with_exit_code_1(cli: Cli, tmp_path: Path) -> None:
    missing = cli.script("get", "nope")
    assert missing.returncode == 1
    assert missing.stderr == (
        f"error: workflowruns.taskforge.io 'nope' not found in namespace '{cli.namespace}'\n")

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


def test_dlq_admin_path_list_show_replay_purge(cli: Cli, redis_server: Any) -> None:
    """The ADMIN path (--redis-url: Redis directly, no API); tests/e2e/web covers the API."""
    prefix = f"cli-{uuid.uuid4().hex[:8]}:"
    settings = RedisSettings(url=redis_server.url, prefix=prefix)

    async def ship(namespace: str, run: str) -> str:
        conn = RedisConnection(settings)
        try:
            return await DeadLetterStream(conn, namespace).ship({
                "id": f"uid-{run}/transform", "workflow": "pipeline", "namespace": namespace,
                "run": run, "step": "transform", "params": {"who": "dlq"},
                "error": "script exited 1", "attempts": 3, "failedAt": iso(-30),
            })
        finally:
            await conn.aclose()

    elsewhere = asyncio.run(ship("another-team", "theirs"))
    sid = asyncio.run(ship(cli.namespace, "pipeline-old"))
    redis = ["--redis-url", redis_server.url, "--redis-prefix", prefix]

    listed = cli("dlq", "list", *redis)  # -n is the test's namespace
    assert listed.exit_code == 0, listed.output
    assert sid in listed.stdout and "transform" in listed.stdout
    assert elsewhere not in listed.stdout and "theirs" not in listed.stdout
    other = cli("dlq", "list", *redis, "-n", "another-team", ns=False)
    assert elsewhere in other.stdout and sid not in other.stdout, other.output
    both = cli("dlq", "list", *redis, "-A", ns=False)
    assert elsewhere in both.stdout and sid in both.stdout, both.output
    shown = json.loads(cli("dlq", "show", sid, *redis, "-o", "json").stdout)
    assert shown["params"] == {"who": "dlq"} and shown["attempts"] == 3

    replayed = cli("dlq", "replay", sid, *redis)
    assert replayed.exit_code == 0, replayed.output
    new = replayed.stdout.split()[0].removeprefix(f"workflowrun.{GROUP}/")  # kubectl's form
    spec = cli.run_object(new)["spec"]
    assert spec["trigger"] == {"type": "replay"} and spec["params"] == {"who": "dlq"}
    assert json.loads(cli("dlq", "list", *redis, "-o", "json").stdout)[0]["replayedAs"] == new

    refused = cli("dlq", "purge", "--all", *redis, input="")
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    assert cli("dlq", "purge", sid, *redis).exit_code == 0
    gone = cli("dlq", "show", sid, *redis)
    assert gone.exit_code == 1 and "no dead-letter entry" in gone.stderr
    bad = cli("dlq", "show", "not-an-id", *redis)
    assert bad.exit_code == 1 and "is not a dead-letter id" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert cli("dlq", "purge", "--all", "--yes", *redis).stdout == "purged 0 entries\n"
    assert cli("dlq", "purge", "--all", "--yes", *redis, "-n", "another-team",
               ns=False).stdout == "purged 1 entry\n"


def test_dlq_without_redis_is_a_one_line_error(cli: Cli) -> None:
    result = cli("dlq", "list", "--redis-url", "redis://127.0.0.1:1/0")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: Redis at redis://127.0.0.1:1/0 unreachable")
    assert len(result.stderr.splitlines()) == 1

