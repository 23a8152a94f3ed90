"""The `log` step and the envelope: what every step goes through before its runner."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.executor.conftest import RunExecutor


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_log_prints_the_message_at_its_level(run_executor: RunExecutor, level: str) -> None:
    result = run_executor("log", {"message": "hello from taskforge", "level": level}, name="greet")

    assert result.code == 0
    assert f"{level.upper()} hello from taskforge\n" in result.stdout
    assert result.message == {"ok": True, "outputs": {"message": "hello from taskforge"}}


def test_log_defaults_to_info_and_names_step_and_run(run_executor: RunExecutor) -> None:
    result = run_executor("log", {"message": "hi"}, name="greet")

    assert result.code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "INFO step greet (log) attempt 1 of run team-a/nightly-abc12"
    assert "INFO hi" in lines
    assert lines[-1].startswith("INFO step greet succeeded in ")


def test_log_step_does_not_import_httpx(run_executor: RunExecutor) -> None:
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['taskforge-executor']\n"
        "try:\n"
        "    runpy.run_module('taskforge_executor', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('LOADED', sorted(m for m in ('httpx', 'smtplib') if m in sys.modules))"
    )
    result = run_executor("log", {"message": "hi"}, command=[sys.executable, "-c", probe])

    assert result.code == 0
    assert "LOADED []" in result.stdout


def test_python_dash_m_entry_point(run_executor: RunExecutor) -> None:
    result = run_executor(
        "log", {"message": "via -m"}, command=[sys.executable, "-m", "taskforge_executor"]
    )

    assert result.code == 0
    assert result.message["outputs"] == {"message": "via -m"}


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "message: Field required"),
        ({"message": ""}, "message: String should have at least 1 character"),
        ({"message": "x", "level": "loud"}, "level: Input should be"),
        ({"message": "x", "colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_malformed_log_config_is_permanent_and_names_the_field(
    run_executor: RunExecutor, config: dict[str, str], field: str
) -> None:
    result = run_executor("log", config)

    assert result.code == 78
    message = result.message
    assert message["ok"] is False
    assert message["retryable"] is False
    assert message["error"].startswith("invalid log config: ")
    assert field in message["error"]
    assert field in result.stdout


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("", "TASKFORGE_STEP is not set"),
        ("{not json", "TASKFORGE_STEP is not valid JSON"),
        ("[]", "TASKFORGE_STEP must be a JSON object"),
        ('{"type": "log", "config": {}}', "name must be a non-empty string"),
        ('{"name": "c", "type": "container", "config": {}}', "container steps run their own"),
        ('{"name": "c", "type": "log", "config": "hi"}', "config must be a JSON object"),
    ],
)
def test_malformed_envelope_is_permanent(run_executor: RunExecutor, raw: str, error: str) -> None:
    result = run_executor("log", {}, raw_step=raw)

    assert result.code == 78
    assert result.message["retryable"] is False
    assert error in result.message["error"]


def test_unwritable_termination_path_still_exits_with_the_code(
    executor_env: dict[str, str], executor_cmd: list[str]
) -> None:
    env = {
        **executor_env,
        "TASKFORGE_STEP": json.dumps({"name": "s", "type": "log", "config": {"message": "hi"}}),
        "TASKFORGE_TERMINATION_MESSAGE_PATH": "/nonexistent-dir/termination-log",
    }
    proc = subprocess.run(
        executor_cmd, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert proc.returncode == 0
    assert "cannot write the termination message to /nonexistent-dir" in proc.stdout


def test_json_lines_carry_the_runs_fields(run_executor: RunExecutor) -> None:
    """TASKFORGE_LOG_FORMAT=json (the operator passes it on): every line the executor itself
    writes is a JSON object with the run's fields, as the operator's lines are."""
    result = run_executor("log", {"message": "hi"}, name="greet", env={
        "TASKFORGE_LOG_FORMAT": "json", "TASKFORGE_WORKFLOW": "nightly",
        "TASKFORGE_ATTEMPT": "2"})

    assert result.code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["message"] for line in lines][:2] == [
        "step greet (log) attempt 2 of run team-a/nightly-abc12", "hi"]
    for line in lines:
        assert {k: line[k] for k in ("namespace", "workflow", "run", "step", "attempt")} == {
            "namespace": "team-a", "workflow": "nightly", "run": "nightly-abc12",
            "step": "greet", "attempt": 2}
        assert line["level"] == "INFO" and line["time"].endswith("+00:00")
