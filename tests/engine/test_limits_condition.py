"""The Workflow's LimitsEnforced condition: a skipped limit is never silent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.validation import workflow_status

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LIMITED = WorkflowSpec.model_validate({"rateLimit": {"limit": 1, "per": "1m"},
                                       "steps": [{"name": "s", "log": {"message": "x"}}]})
FREE = WorkflowSpec.model_validate({"steps": [{"name": "s", "log": {"message": "x"}}]})


def _limits(spec: WorkflowSpec, old: dict[str, Any] | None = None, **kw: Any) -> Any:
    status = workflow_status(old_status=old or {}, spec=spec, spec_error=None, generation=1,
                             runs=[], now=NOW, **kw)
    found = [c for c in status["conditions"] if c["type"] == "LimitsEnforced"]
    return (found[0]["status"], found[0]["reason"]) if found else None, status


@pytest.mark.parametrize("spec,kw,expected", [
    (FREE, {"redis_outage": "down"}, None),
    (LIMITED, {}, ("True", "RedisConfigured")),
    (LIMITED, {"redis_configured": False}, ("False", "RedisNotConfigured")),
    (LIMITED, {"redis_outage": "Redis at x is unreachable"}, ("False", "RedisUnavailable")),
])
def test_limits_enforced(spec: WorkflowSpec, kw: dict[str, Any], expected: Any) -> None:
    assert _limits(spec, **kw)[0] == expected


def test_back_to_true_when_redis_returns() -> None:
    (_, status) = _limits(LIMITED, redis_outage="Redis at x is unreachable")
    down = next(c for c in status["conditions"] if c["type"] == "LimitsEnforced")
    assert "unreachable" in down["message"]
    (got, _) = _limits(LIMITED, old=status)
    assert got == ("True", "RedisConfigured")
