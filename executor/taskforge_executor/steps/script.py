"""The `script` step: run sh, bash or python source as a child process.

Everything the script leaves behind lives in a fresh directory under `$TMPDIR` (the pod's
only writable place, an emptyDir): the source file, the result file and, unless the step
sets `workingDir`, the working directory. The child's stdout and stderr are passed through
to the executor's stdout line by line, with the step's secret env values redacted, so
`kubectl logs` shows the script as it runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from taskforge.api.results import EXIT_PERMANENT
from taskforge.api.step_types import ScriptStep

from taskforge_executor.console import Redactor
from taskforge_executor.contract import ENV_RESULT
from taskforge_executor.outcome import StepError, permanent, retryable
from taskforge_executor.steps import StepContext
from taskforge_executor.validate import invalid, validate

STDOUT_TAIL_BYTES = 1024
_MAX_LINE = 64 * 1024
_SUFFIX = {"sh": ".sh", "bash": ".sh", "python": ".py"}


def _command(language: str, path: Path) -> list[str]:
    if language == "python":
        # The executor's own interpreter: always present in the image; -u so output streams.
        return [sys.executable, "-u", str(path)]
    return [language, str(path)]


class _Stream:
    """Pass one pipe through line by line, redacted, keeping a tail when asked."""

    def __init__(self, emit: Callable[[bytes], None], redactor: Redactor, tail: bool) -> None:
        self._emit = emit
        self._redactor = redactor
        self._pending = b""
        self._keep_tail = tail
        self.tail = b""

    def _out(self, data: bytes) -> None:
        text = self._redactor.text(data.decode(errors="replace"))
        clean = text.encode()
        self._emit(clean)
        if self._keep_tail:
            self.tail = (self.tail + clean)[-STDOUT_TAIL_BYTES:]

    def feed(self, data: bytes) -> None:
        """Lines are emitted whole, so a secret is never split across two redaction calls."""
        self._pending += data
        cut = self._pending.rfind(b"\n") + 1
        if cut:
            self._out(self._pending[:cut])
            self._pending = self._pending[cut:]
        if len(self._pending) > _MAX_LINE:
            self.close()

    def close(self) -> None:
        if self._pending:
            self._out(self._pending)
            self._pending = b""


def _pump(streams: dict[int, _Stream]) -> None:
    """Copy the pipes (by fd) until the child closes them: single-threaded, with a selector."""
    with selectors.DefaultSelector() as selector:
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            for key, _ in selector.select():
                data = os.read(key.fd, 65536)
                if data:
                    streams[key.fd].feed(data)
                else:
                    selector.unregister(key.fd)
                    streams[key.fd].close()


def _read_result(path: Path) -> dict[str, Any]:
    """The script's result object; a present but invalid file is the script's bug."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise permanent(f"cannot read the result file ${ENV_RESULT}: {exc}") from None
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise permanent(f"the result file ${ENV_RESULT} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise permanent(
            f"the result file ${ENV_RESULT} must hold a JSON object, not {type(value).__name__}"
        )
    return value


def _tail_text(tail: bytes) -> str:
    # The tail may start mid-character; drop the broken start rather than show U+FFFD.
    for skip in range(4):
        try:
            return tail[skip:].decode()
        except UnicodeDecodeError:
            continue
    return tail.decode(errors="replace")


def run(config: Any, ctx: StepContext) -> dict[str, Any]:
    step = validate(ScriptStep, config, "script")
    env = dict(ctx.env)
    for entry in step.env or []:
        if entry.value is not None:
            env[entry.name] = entry.value
        elif entry.value_from is not None and entry.value_from.secret_key_ref is not None:
            ctx.console.redactor.add(env.get(entry.name))
    if step.working_dir is not None and not os.path.isdir(step.working_dir):
        raise invalid("script", f"workingDir: {step.working_dir} is not a directory")

    scratch = Path(tempfile.mkdtemp(prefix="taskforge-script-"))
    try:
        source = scratch / f"script{_SUFFIX[step.language]}"
        source.write_text(step.source, encoding="utf-8")
        result_path = scratch / "result.json"
        env[ENV_RESULT] = str(result_path)
        workdir = step.working_dir
        if workdir is None:
            workdir = str(scratch / "work")
            os.mkdir(workdir)
        return _execute(
            language=step.language,
            source=source,
            result_path=result_path,
            workdir=workdir,
            env=env,
            ctx=ctx,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _execute(
    *,
    language: str,
    source: Path,
    result_path: Path,
    workdir: str,
    env: dict[str, str],
    ctx: StepContext,
) -> dict[str, Any]:
    command = _command(language, source)
    ctx.console.info(f"running {language} script in {workdir}")
    try:
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so SIGTERM reaches its children
        )
    except FileNotFoundError:
        raise permanent(f"interpreter {command[0]!r} not found in the executor image") from None

    terminated = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal terminated
        terminated = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        out = _Stream(ctx.console.raw, ctx.console.redactor, tail=True)
        err = _Stream(ctx.console.raw, ctx.console.redactor, tail=False)
        _pump({proc.stdout.fileno(): out, proc.stderr.fileno(): err})
        code = proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()

    outputs: dict[str, Any] = {"exitCode": code, "stdout": _tail_text(out.tail)}
    if terminated or code != 0:
        # What a failing script managed to report still helps; a broken file does not matter.
        with contextlib.suppress(StepError):
            outputs.update(_read_result(result_path))
    if terminated:
        raise retryable("script terminated by SIGTERM", outputs=outputs)
    if code != 0:
        reason = f"killed by signal {-code}" if code < 0 else f"exited with {code}"
        if code == EXIT_PERMANENT:
            raise permanent(f"script {reason} (permanent failure)", outputs=outputs)
        raise retryable(f"script {reason}", outputs=outputs)
    try:
        outputs.update(_read_result(result_path))
    except StepError as exc:
        exc.outputs = outputs
        raise
    ctx.console.info("script exited with 0")
    return outputs
