"""`taskforge get`: a forEach step's item progress under the step; a workflow step's child."""

from __future__ import annotations

from datetime import UTC, datetime

from taskforge.cli.run_view import _step_details, item_line


def test_item_counts_and_first_failures() -> None:
    items = {"total": 10, "succeeded": 6, "failed": 1, "running": 3, "phases": "SSSSSSFRRR",
             "failures": [{"index": 6, "message": "exit 78: bad region"}]}
    assert item_line(items).plain == (
        "items 7/10 ended: 6 succeeded, 1 failed, 3 running  failed #6: exit 78: bad region")


def test_no_items() -> None:
    assert item_line({"total": 0}).plain == "items 0/0 ended"


def test_a_workflow_step_names_its_child_run() -> None:
    lines = _step_details({"phase": "Running", "childRun": "onboard-1-greet-1a2b3c4d"},
                          datetime(2026, 1, 1, tzinfo=UTC))
    assert [t.plain for t in lines] == ["child run onboard-1-greet-1a2b3c4d"]
