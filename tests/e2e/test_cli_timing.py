"""The CLI's `run --at/--in/--priority` against the real API server (issue 19)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from localcluster.testing import ClusterUnderTest

from tests.e2e.cli_kit import Cli, install_crds, pipeline_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def crds(cluster: ClusterUnderTest) -> ClusterUnderTest:
    return install_crds(cluster)


@pytest.fixture
def cli(crds: ClusterUnderTest, namespace: str) -> Iterator[Cli]:
    yield pipeline_cli(crds, namespace)


def test_run_at_in_and_priority_write_the_spec(cli: Cli) -> None:
    result = cli("run", "pipeline", "-p", "who=me", "--at", "2030-01-02T03:04:05+02:00",
                 "--priority", "10", "--name", "at-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == ("workflowrun.taskforge.io/at-run created"
                                     " (starts at 2030-01-02T01:04:05.000Z)")
    spec = cli.run_object("at-run")["spec"]
    assert spec["startAt"] == "2030-01-02T01:04:05.000Z" and spec["priority"] == 10
    assert "startAfter" not in spec

    result = cli("run", "pipeline", "-p", "who=me", "--in", "1h30m", "--name", "in-run")
    assert result.exit_code == 0, result.output
    assert "(starts in 1h30m)" in result.stdout
    spec = cli.run_object("in-run")["spec"]
    assert spec["startAfter"] == "1h30m" and "startAt" not in spec and "priority" not in spec

    # A time without offset is the local time of the person typing it.
    local = datetime(2030, 6, 1, 9, 0)
    result = cli("run", "pipeline", "-p", "who=me", "--at", local.isoformat(), "--name", "lt")
    assert result.exit_code == 0, result.output
    stored = datetime.fromisoformat(cli.run_object("lt")["spec"]["startAt"].replace("Z", "+00:00"))
    assert stored == local.astimezone(UTC)


def test_run_refuses_bad_times_naming_the_option(cli: Cli) -> None:
    for args, message in [
        (["--at", "tomorrow"], "--at"),
        (["--in", "10 minutes"], "--in"),
        (["--in", "9000h"], "longer than 8784h"),
        (["--at", "2030-01-01T00:00:00Z", "--in", "1m"], "not both"),
        (["--priority", "5000"], "--priority"),
    ]:
        result = cli("run", "pipeline", "-p", "who=me", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert json.loads(cli.kubectl("get", "workflowruns", "-o", "json"))["items"] == []


def test_run_in_is_counted_from_creation(cli: Cli) -> None:
    """What the operator will compute: creationTimestamp + startAfter."""
    result = cli("run", "pipeline", "-p", "who=me", "--in", "90s", "-o", "json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    made = datetime.fromisoformat(created["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    assert abs(made - datetime.now(UTC)) < timedelta(seconds=30)
    assert created["spec"]["startAfter"] == "90s"
