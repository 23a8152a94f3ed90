"""`taskforge-executor`: run the step described by `TASKFORGE_STEP`, report, exit.

The flow is the same for every type: read the envelope, import only that type's runner,
run it, then write the termination message and exit 0, 75 (retryable) or 78 (permanent).
Whatever happens - bad config, a library error, SIGTERM from an expiring deadline - the
operator gets a termination message and one of those codes, never a bare traceback.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from types import FrameType
from typing import Any

from taskforge.api.results import EXIT_OK, EXIT_PERMANENT, EXIT_RETRYABLE

from taskforge_executor import bigresult, contract, logcopy
from taskforge_executor.console import Console, Redactor
from taskforge_executor.outcome import Outcome, StepError, encode, permanent
from taskforge_executor.settings import load_settings
from taskforge_executor.steps import StepContext


class Terminated(BaseException):
    """SIGTERM arrived (deadline, deletion): report a retryable failure before dying.

    A BaseException so that no step code's `except Exception` swallows it.
    """


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _envelope(env: Mapping[str, str]) -> tuple[str, str, dict[str, Any]]:
    """(name, type, config) from `TASKFORGE_STEP`; any defect is a permanent failure."""
    raw = env.get(contract.ENV_STEP)
    if not raw:
        raise permanent(f"{contract.ENV_STEP} is not set")
    try:
        envelope = json.loads(raw)
    except ValueError as exc:
        raise permanent(f"{contract.ENV_STEP} is not valid JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise permanent(f"{contract.ENV_STEP} must be a JSON object")
    name = envelope.get("name")
    step_type = envelope.get("type")
    config = envelope.get("config")
    if not isinstance(name, str) or not name:
        raise permanent(f"{contract.ENV_STEP}: name must be a non-empty string")
    if step_type not in contract.EXECUTOR_STEP_TYPES:
        raise permanent(
            f"{contract.ENV_STEP}: type must be one of {', '.join(contract.EXECUTOR_STEP_TYPES)}"
            f" (got {step_type!r}; container steps run their own image)"
        )
    if not isinstance(config, dict):
        raise permanent(f"{contract.ENV_STEP}: config must be a JSON object")
    return name, str(step_type), config


def execute(env: Mapping[str, str], console: Console) -> Outcome:
    """Run the step and turn every way it can end into an `Outcome`."""
    started = time.monotonic()
    name = "?"
    try:
        name, step_type, config = _envelope(env)
        settings = load_settings(env)
        ctx = StepContext(
            name=name,
            run=settings.run,
            namespace=settings.namespace,
            attempt=settings.attempt,
            env=env,
            console=console,
        )
        if settings.log_format == "json":
            fields = {"namespace": ctx.namespace, "workflow": settings.workflow,
                      "run": ctx.run, "step": name, "attempt": ctx.attempt, "type": step_type}
            console.use_json({k: v for k, v in fields.items() if v})
        where = f" of run {ctx.namespace}/{ctx.run}" if ctx.run else ""
        console.info(f"step {name} ({step_type}) attempt {ctx.attempt}{where}")
        runner = importlib.import_module(f"taskforge_executor.steps.{step_type}")
        outputs: dict[str, Any] = runner.run(config, ctx)
    except StepError as failure:
        kind = "retryable" if failure.retryable else "permanent"
        console.error(f"step {name} failed ({kind}): {failure.message}")
        return Outcome(
            ok=False,
            outputs=failure.outputs,
            error=failure.message,
            retryable=failure.retryable,
            retry_after=failure.retry_after,
            http_status=failure.http_status,
        )
    except Terminated:
        console.error(f"step {name} terminated by SIGTERM")
        return Outcome(ok=False, error="terminated by SIGTERM", retryable=True)
    except Exception as exc:
        # A bug or an unforeseen library error: same input, same crash, so do not retry.
        for chunk in traceback.format_exception(exc):
            console.stream.write(console.redactor.text(chunk))
        console.error(f"step {name} failed (permanent): internal error: {exc!r}")
        return Outcome(ok=False, error=f"internal error: {exc!r}", retryable=False)
    elapsed_ms = round((time.monotonic() - started) * 1000)
    console.info(f"step {name} succeeded in {elapsed_ms} ms")
    return Outcome(ok=True, outputs=outputs)


def exit_code(outcome: Outcome) -> int:
    if outcome.ok:
        return EXIT_OK
    return EXIT_RETRYABLE if outcome.retryable else EXIT_PERMANENT


def write_termination_message(outcome: Outcome, env: Mapping[str, str], console: Console,
                              log: str | None = None) -> None:
    """Write the result for the operator (with the whole log when it fits); failing to is
    logged, the exit code still tells."""
    path = env.get(contract.ENV_TERMINATION_MESSAGE_PATH) or (
        contract.DEFAULT_TERMINATION_MESSAGE_PATH
    )
    try:
        with open(path, "wb") as out:
            out.write(encode(outcome, log=log))
    except OSError as exc:
        console.error(f"cannot write the termination message to {path}: {exc}")


def main() -> int:
    log = logcopy.install()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        log.drop()  # the exception may land between a write and its copy
        _on_sigterm(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    redactor = Redactor()
    console = Console(redactor)
    env = os.environ
    outcome = execute(env, console)
    redacted = Outcome(
        ok=outcome.ok,
        outputs=redactor.data(outcome.outputs),
        error=redactor.text(outcome.error) if outcome.error is not None else None,
        retryable=outcome.retryable,
        retry_after=outcome.retry_after,
        http_status=outcome.http_status,
    )
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the result is known: let it be written
    redacted = bigresult.prepare(redacted, console.stream)
    write_termination_message(redacted, env, console, log.text())
    return exit_code(redacted)


if __name__ == "__main__":
    sys.exit(main())
