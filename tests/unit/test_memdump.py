"""The operator's on-demand memory dump (TASKFORGE_MEMDUMP, issue 14's per-run breakdown):
off by default, on SIGUSR2 it writes a tracemalloc snapshot and the deep size per holder."""

from __future__ import annotations

import json
import os
import signal
import sys
import tracemalloc
from pathlib import Path

import pytest
from taskforge.api import WorkflowSpec
from taskforge.handlers import memdump


class Holder:
    def __init__(self) -> None:
        self.small: dict[str, str] = {}
        self.big: dict[str, str] = {}
        self.callback = self.method  # a bound method: not walked into (it would reach self)

    def method(self) -> None:
        pass


def test_off_without_the_variable() -> None:
    assert memdump.install_from_env({}, signals=()) is None
    assert memdump.install_from_env({memdump.ENV: ""}, signals=()) is None


def test_bad_frame_count_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=memdump.FRAMES_ENV):
        memdump.install_from_env({memdump.ENV: str(tmp_path), memdump.FRAMES_ENV: "0"},
                                 signals=())


def test_deep_size_counts_shared_objects_once() -> None:
    shared = {"k": "x" * 10_000}
    seen: set[int] = set()
    first, _ = memdump.deep_size({"a": shared}, seen)
    second, _ = memdump.deep_size({"b": shared}, seen)
    assert first > 10_000 > second


def test_deep_size_walks_pydantic_models() -> None:
    spec = WorkflowSpec.model_validate(
        {"steps": [{"name": f"s{i}", "log": {"message": "m" * 1000}} for i in range(10)]})
    size, objects = memdump.deep_size(spec, set())
    assert size > 10 * 1000
    assert objects > 20


def test_holders_rank_by_deep_size_and_skip_bound_methods() -> None:
    h = Holder()
    h.small["a"] = "x"
    h.big.update({str(i): str(i) + "y" * 1000 for i in range(100)})  # distinct strings
    rows = memdump.holders({"h": h})
    assert [r["holder"] for r in rows[:2]] == ["h.big", "h.small"]
    assert rows[0]["entries"] == 100
    assert rows[0]["bytes"] > 100 * 1000
    callback = next(r for r in rows if r["holder"] == "h.callback")
    assert callback["bytes"] < 1000  # the method itself, not the holder it is bound to


@pytest.mark.skipif(sys.platform == "win32", reason="SIGUSR2")
def test_sigusr2_writes_a_snapshot_and_holders(tmp_path: Path) -> None:
    previous = signal.getsignal(signal.SIGUSR2)
    was_tracing = tracemalloc.is_tracing()
    try:
        dumper = memdump.install_from_env({memdump.ENV: str(tmp_path / "d"),
                                           memdump.FRAMES_ENV: "2"})
        assert dumper is not None and tracemalloc.is_tracing()
        os.kill(os.getpid(), signal.SIGUSR2)  # handled before the next bytecode here
        summary = json.loads((tmp_path / "d" / "holders-1.json").read_text())
        assert summary["n"] == 1 and summary["traced"] > 0
        assert summary["holders"] == []  # no operator running in this process
        snapshot = tracemalloc.Snapshot.load(str(tmp_path / "d" / "snapshot-1.tracemalloc"))
        assert snapshot.traceback_limit == 2
        assert snapshot.traces
    finally:
        signal.signal(signal.SIGUSR2, previous)
        if not was_tracing:
            tracemalloc.stop()


def test_body_parts_split_status_fields_and_count_a_shared_spec_once() -> None:
    spec = {"steps": [{"name": "s", "log": {"message": "x" * 5000}}]}
    bodies = {i: {"metadata": {"name": f"r{i}"}, "status": {"phase": "Running",
                                                           "workflowSpec": spec}}
              for i in range(3)}
    rows = {r["holder"]: r for r in memdump.body_parts("runs", bodies)}
    assert set(rows) == {"runs[*].metadata", "runs[*].status.phase",
                         "runs[*].status.workflowSpec"}
    assert rows["runs[*].status.workflowSpec"]["entries"] == 3
    assert 5000 < rows["runs[*].status.workflowSpec"]["bytes"] < 2 * 5000  # once, not 3 times
