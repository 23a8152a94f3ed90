"""The executor's copy of its log in the termination message (logcopy.py): whole or absent,
never cut, never in place of the result; and the process's message against what it printed."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from taskforge.api.results import TERMINATION_MESSAGE_MAX_BYTES
from taskforge_executor.logcopy import LogCopy, copying
from taskforge_executor.outcome import Outcome, encode

if TYPE_CHECKING:
    from tests.executor.conftest import HttpServer, RunExecutor


@pytest.mark.parametrize(
    ("writes", "limit", "expect"),
    [
        ([], 10, ""),
        ([b"abc\n", b"de"], 10, "abc\nde"),
        ([b"0123456789"], 10, "0123456789"),  # exactly the limit
        ([b"01234", b"567890"], 10, None),  # one byte over: no log, never a cut one
        ([b"01234567890", b"x"], 10, None),  # once dropped, stays dropped
        ([b"caf\xc3\xa9\n"], 10, "café\n"),
        ([b"\xff\n"], 10, None),  # not UTF-8: the message could not carry it as printed
        ([b"caf\xc3", b"\xa9"], 10, "café"),  # a character split across writes
    ],
)
def test_log_copy_is_whole_or_nothing(writes: list[bytes], limit: int,
                                      expect: str | None) -> None:
    copy = LogCopy(limit)
    for chunk in writes:
        copy.add(chunk)
    assert copy.text() == expect


def test_copying_passes_every_write_through_at_once() -> None:
    target = io.BytesIO()
    copy = LogCopy(100)
    stream = copying(io.TextIOWrapper(target, encoding="utf-8"), copy)
    stream.write("INFO one\n")
    assert target.getvalue() == b"INFO one\n"  # not waiting in a buffer
    stream.buffer.write(b"raw child output\n")  # the way Console.raw passes a script's output
    assert target.getvalue() == b"INFO one\nraw child output\n"
    assert copy.text() == "INFO one\nraw child output\n"
    plain = io.StringIO()
    assert copying(plain, copy) is plain  # no bytes underneath: nothing to copy


@pytest.mark.parametrize(
    ("outputs", "log", "log_kept"),
    [
        ({"a": 1}, "INFO hi\n", True),
        ({"a": 1}, None, False),
        ({"a": 1}, "x" * (TERMINATION_MESSAGE_MAX_BYTES - 30), False),  # no room beside it
        ({"big": "y" * 5000}, "INFO hi\n", False),  # the result is cut: it keeps the room
        ({"a": "\"quotes\" and \\ and \n"}, "line \"quoted\"\n\t", True),
    ],
)
def test_the_log_goes_in_only_whole_and_after_the_result(
    outputs: dict[str, object], log: str | None, log_kept: bool,
) -> None:
    outcome = Outcome(ok=True, outputs=outputs)
    data = encode(outcome, log=log)
    assert len(data) <= TERMINATION_MESSAGE_MAX_BYTES
    message = json.loads(data)
    assert ("log" in message) == log_kept
    if log_kept:
        assert message["log"] == log
        assert message["outputs"] == outputs
    assert json.loads(encode(outcome))["outputs"] == message["outputs"]  # the log cost nothing


def test_the_message_holds_exactly_what_the_container_printed(
    executor_cmd: list[str], executor_env: dict[str, str], tmp_path: Path,
) -> None:
    """One pipe for stdout and stderr, as the container runtime's log has them: the copy is
    the log byte for byte, the executor's own lines and the script's interleaved."""
    source = "echo out; echo err >&2; printf 'no newline'"
    step = {"name": "both", "type": "script", "config": {"language": "sh", "source": source}}
    proc = subprocess.run(executor_cmd, env={**executor_env, "TASKFORGE_STEP": json.dumps(step)},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stdout
    message = json.loads((tmp_path / "termination-log").read_bytes())
    assert message["log"].encode() == proc.stdout
    assert "INFO step both succeeded in" in message["log"]


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("head -c 5000 /dev/zero | tr '\\0' a", "longer than the message"),
        ("echo run; python3 -c 'import os; os.write(2, b\"x\" * 4100)'", "past the limit"),
    ],
)
def test_no_log_in_the_message_when_it_does_not_fit(run_executor: RunExecutor, source: str,
                                                    why: str) -> None:
    result = run_executor("script", {"language": "sh", "source": source})
    assert result.code == 0
    assert "log" not in result.full_message, why
    assert result.message["ok"] is True


def test_sigterm_through_the_executor_drops_the_log(
    executor_cmd: list[str], executor_env: dict[str, str], tmp_path: Path,
    http_server: HttpServer,
) -> None:
    """SIGTERM raises inside whatever the step was doing, maybe between a write and its
    copy: the message then carries no log (the archive reads the pod's), only the result."""
    step = {"name": "wait", "type": "http",
            "config": {"url": f"{http_server.url}/slow?seconds=20", "timeout": "30s"}}
    with subprocess.Popen(executor_cmd, env={**executor_env, "TASKFORGE_STEP": json.dumps(step)},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the step's first line: it is running
        assert b"step wait (http)" in first, first
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 75
    message = json.loads((tmp_path / "termination-log").read_bytes())
    assert message["retryable"] is True and "SIGTERM" in message["error"]
    assert "log" not in message
