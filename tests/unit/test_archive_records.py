"""Which steps' termination messages may stand in for their pod's log (archive_records)."""

from __future__ import annotations

from typing import Any

import pytest
from taskforge.adapters.archive_records import runs_executor

SPEC: dict[str, Any] = {
    "steps": [
        {"name": "say", "log": {"message": "hi"}},
        {"name": "sh", "script": {"language": "sh", "source": "echo"}},
        {"name": "own", "container": {"image": "busybox"}},
        {"name": "child", "workflow": {"name": "other"}},
        {"name": "odd", "script": "not a mapping"},
    ],
    "finally": [{"name": "tell", "slack": {"channel": "#ops"}}],
}


@pytest.mark.parametrize(
    ("spec", "step", "expect"),
    [
        (SPEC, "say", True),
        (SPEC, "sh", True),
        (SPEC, "tell", True),  # finally steps too
        (SPEC, "own", False),  # the user's image writes its own termination message
        (SPEC, "child", False),
        (SPEC, "odd", False),  # hostile spec: a field of the wrong type
        (SPEC, "missing", False),
        (None, "say", False),
        ({"steps": "nonsense"}, "say", False),
    ],
)
def test_runs_executor(spec: dict[str, Any] | None, step: str, expect: bool) -> None:
    assert runs_executor(spec, step) is expect
