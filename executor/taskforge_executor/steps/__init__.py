"""One module per step type, each with `run(config, ctx) -> outputs`.

`main` imports only the module of the step it runs, so a `log` step never loads httpx or
smtplib: start-up time is paid per type, not for all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from taskforge_executor.console import Console


@dataclass(frozen=True)
class StepContext:
    """What a step runner may use besides its config: identity, environment, the log."""

    name: str
    run: str
    namespace: str
    attempt: int
    env: Mapping[str, str]
    console: Console
