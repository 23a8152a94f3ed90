"""The `script` step: real sh, bash and python children, result files, exit codes, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.executor.conftest import RunExecutor


def script(source: str, language: str = "sh", **extra: Any) -> dict[str, Any]:
    return {"language": language, "source": source, **extra}


def test_sh_result_file_becomes_outputs(run_executor: RunExecutor) -> None:
    source = 'echo working\necho \'{"answer": 42, "items": ["a", "b"]}\' > "$TASKFORGE_RESULT"\n'
    result = run_executor("script", script(source))

    assert result.code == 0
    assert result.message == {
        "ok": True,
        "outputs": {"exitCode": 0, "stdout": "working\n", "answer": 42, "items": ["a", "b"]},
    }
    assert "working\n" in result.stdout


def test_bash_runs_bash(run_executor: RunExecutor) -> None:
    source = 'arr=(one two three)\necho "${#arr[@]} ${arr[1]}"\n[[ -n "$BASH_VERSION" ]]\n'
    result = run_executor("script", script(source, "bash"))

    assert result.code == 0
    assert result.outputs["stdout"] == "3 two\n"


def test_python_with_env_and_result(run_executor: RunExecutor) -> None:
    source = (
        "import json, os, sys\n"
        "print('greeting', os.environ['GREETING'], os.environ['TASKFORGE_RUN'])\n"
        "print('to stderr', file=sys.stderr)\n"
        "with open(os.environ['TASKFORGE_RESULT'], 'w') as f:\n"
        "    json.dump({'greeting': os.environ['GREETING'], 'stdout': 'overridden'}, f)\n"
    )
    config = script(source, "python", env=[{"name": "GREETING", "value": "hallo"}])
    result = run_executor("script", config)

    assert result.code == 0
    # The result file is merged last, so its keys win.
    assert result.outputs == {"exitCode": 0, "stdout": "overridden", "greeting": "hallo"}
    assert "greeting hallo nightly-abc12\n" in result.stdout
    assert "to stderr\n" in result.stdout  # stderr is streamed to the executor's stdout too


def test_exit_1_is_retryable_with_the_stdout_tail(run_executor: RunExecutor) -> None:
    result = run_executor("script", script("echo about to fail\nexit 1\n"))

    assert result.code == 75
    message = result.message
    assert message["ok"] is False
    assert message["retryable"] is True
    assert message["error"] == "script exited with 1"
    assert message["outputs"] == {"exitCode": 1, "stdout": "about to fail\n"}


def test_exit_78_is_permanent(run_executor: RunExecutor) -> None:
    source = 'echo \'{"reason": "bad input"}\' > "$TASKFORGE_RESULT"\nexit 78\n'
    result = run_executor("script", script(source))

    assert result.code == 78
    assert result.message["retryable"] is False
    # What a failing script reported is kept.
    assert result.outputs == {"exitCode": 78, "stdout": "", "reason": "bad input"}


def test_stdout_tail_is_the_last_kib_and_the_log_has_everything(
    run_executor: RunExecutor,
) -> None:
    source = "for i in $(seq 1 500); do echo line-$i-xxxxxxxxxx; done\necho END\n"
    result = run_executor("script", script(source))

    assert result.code == 0
    tail = result.outputs["stdout"]
    assert tail.endswith("line-500-xxxxxxxxxx\nEND\n")
    assert 900 <= len(tail.encode()) <= 1024
    assert "line-1-xxxxxxxxxx\n" in result.stdout
    assert result.stdout.count("xxxxxxxxxx\n") == 500
    assert len(result.termination) <= 4096


def test_invalid_result_json_is_permanent_and_names_the_file(run_executor: RunExecutor) -> None:
    result = run_executor("script", script("echo '{not json' > \"$TASKFORGE_RESULT\"\n"))

    assert result.code == 78
    assert "$TASKFORGE_RESULT is not valid JSON" in result.message["error"]
    assert result.outputs["exitCode"] == 0


def test_result_must_be_an_object(run_executor: RunExecutor) -> None:
    result = run_executor("script", script("echo '[1, 2]' > \"$TASKFORGE_RESULT\"\n"))

    assert result.code == 78
    assert "must hold a JSON object, not list" in result.message["error"]


def test_secret_env_values_are_redacted(run_executor: RunExecutor) -> None:
    secret = "hunter2-very-secret"
    config = script(
        'echo "token is $API_TOKEN"\necho "{\\"leak\\": \\"$API_TOKEN\\"}" > "$TASKFORGE_RESULT"\n',
        env=[{"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "t"}}}],
    )
    result = run_executor("script", config, env={"API_TOKEN": secret})

    assert result.code == 0
    assert secret not in result.everything()
    assert "token is [redacted]" in result.stdout
    assert result.outputs["leak"] == "[redacted]"


def test_scratch_files_live_under_tmpdir_and_are_removed(
    run_executor: RunExecutor, tmp_path: Path
) -> None:
    result = run_executor("script", script('echo "$TASKFORGE_RESULT"\npwd\n'))

    assert result.code == 0
    result_path, workdir = result.outputs["stdout"].splitlines()
    tmpdir = tmp_path / "tmpdir"
    assert Path(result_path).is_relative_to(tmpdir)
    assert Path(workdir).is_relative_to(tmpdir)
    assert list(tmpdir.iterdir()) == []


def test_working_dir(run_executor: RunExecutor, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_executor("script", script("pwd\n", workingDir=str(workdir)))

    assert result.code == 0
    assert result.outputs["stdout"] == f"{workdir}\n"


def test_missing_working_dir_is_permanent(run_executor: RunExecutor) -> None:
    result = run_executor("script", script("pwd\n", workingDir="/does/not/exist"))

    assert result.code == 78
    assert "workingDir" in result.message["error"]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"language": "ruby", "source": "puts 1"}, "language: Input should be"),
        ({"language": "sh"}, "source: Field required"),
        ({"source": "x", "env": [{"name": "1BAD", "value": "v"}]}, "env[0].name"),
    ],
)
def test_malformed_script_config(
    run_executor: RunExecutor, config: dict[str, Any], field: str
) -> None:
    result = run_executor("script", config)

    assert result.code == 78
    assert field in result.message["error"]


def test_sigterm_stops_the_script_and_is_retryable(
    executor_env: dict[str, str], executor_cmd: list[str], tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    source = f'echo $$ > {pid_file}\necho started\nsleep 30\necho "not reached"\n'
    env = {
        **executor_env,
        "TASKFORGE_STEP": json.dumps({"name": "s", "type": "script", "config": script(source)}),
    }
    started = time.monotonic()
    with subprocess.Popen(
        executor_cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline, "the script did not start"
            time.sleep(0.02)
        child = int(pid_file.read_text())
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=10)

    assert proc.returncode == 75
    assert time.monotonic() - started < 10
    assert "not reached" not in stdout
    message = json.loads((tmp_path / "termination-log").read_bytes())
    assert message["retryable"] is True
    assert "SIGTERM" in message["error"]
    # The script step forwards SIGTERM to the script without raising, so no write is cut
    # from its copy: the log may ride along, and then it is exactly what was printed.
    assert message.get("log", stdout) == stdout
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
