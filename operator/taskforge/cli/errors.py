"""One-line errors for people, and the command group that turns them into exit code 1.

The HTTP client (lightkube, httpx2) is imported only when an error has to be described and
a command has loaded it: `taskforge --help` must not pay for it.

A CLI that prints a traceback for "run not found" or "connection refused" reads as a
crash. Commands raise `CliError` (or let lightkube's `ApiError` or a connection error
escape); `Group.invoke` catches them once for every command and sub-command, prints
`error: ...` on stderr and exits 1. Bugs still raise, so they stay visible.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup, TyperOption

if TYPE_CHECKING:  # the client is imported by the commands that use it, not by `--help`
    from lightkube import ApiError


class CliError(Exception):
    """An expected failure with a message for the user; the CLI exits 1."""


def api_message(exc: ApiError) -> str:
    """The apiserver's own sentence from its Status, else the HTTP status and reason."""
    status = exc.status
    if status.message:
        return str(status.message)
    return f"{status.code} {status.reason or ''}".strip()


def describe(exc: BaseException) -> str | None:
    """The one-line message for an expected error, or None for a bug."""
    if isinstance(exc, CliError):
        return str(exc)
    if "lightkube" not in sys.modules:  # no command that talks to the cluster has run
        return None
    import httpx2  # noqa: PLC0415 (lazy: see the module's docstring)
    from lightkube import ApiError, ConfigError  # noqa: PLC0415

    if isinstance(exc, ApiError):
        if exc.status.code in (401, 403):
            return f"not allowed: {api_message(exc)}"
        return f"Kubernetes API error: {api_message(exc)}"
    if isinstance(exc, httpx2.HTTPStatusError):  # an answer that is not a Kubernetes Status
        response = exc.response
        if response.status_code in (401, 403):
            return f"not allowed: {response.status_code} {response.reason_phrase}"
        body = " ".join(response.text.split())[:200]
        return f"Kubernetes API error: {response.status_code} {body or response.reason_phrase}"
    if isinstance(exc, httpx2.TransportError):  # refused, unresolvable, TLS, timeouts
        try:
            url = exc.request.url
            where = f" at {url.scheme}://{url.netloc.decode()}"
        except RuntimeError:  # no request attached
            where = ""
        return f"cannot reach the Kubernetes API{where}: {_reason(exc)}"
    if isinstance(exc, ConfigError):
        return f"kubeconfig: {exc}"
    return None


def _reason(exc: Any) -> str:
    """`Connection refused` rather than `[Errno 111] Connection refused`; the exception's
    name when it says nothing (a timeout)."""
    text = re.sub(r"^\[Errno -?\d+\] ", "", str(exc)).strip()
    return text or type(exc).__name__


class Group(TyperGroup):
    """The root command group: expected errors become one line on stderr and exit code 1."""

    def invoke(self, ctx: Any) -> Any:  # Any: typer's vendored click Context is private
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # `taskforge logs RUN | head`: the reader left. Stop quietly, and point stdout
            # at devnull so the flush at exit does not raise again (the signal module's
            # advice for SIGPIPE in Python).
            _silence_stdout()
            raise typer.Exit(0) from None
        except Exception as exc:  # typer.Exit and usage errors are not "expected": re-raised
            message = describe(exc)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            raise typer.Exit(1) from None


def _silence_stdout() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


_option_type = TyperOption.display_type_rich


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    """No `<bool>` next to a flag in help: a flag takes no value (as click and kubectl show
    it). typer 0.29 labels every option with its type; tests/unit/test_cli_main.py checks
    the help of every command, so a typer upgrade that changes this hook is noticed."""
    if self.is_flag or self.count:
        return None
    return _option_type(self, ctx)


TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]
