"""The node agent's log store finds a container's log by its pod, as a kubelet does, without
listing every pod directory (the run archive reads one log per step attempt through it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from localcluster.logserver import LogStore


def _start(store: LogStore, ns: str, pod: str, uid: str, restart: int, *, mtime: float) -> Path:
    pod_dir = store.pod_dir(ns, pod, uid)
    log = store.log_path(pod_dir, "step", restart)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"{uid} run {restart}\n")
    os.utime(pod_dir, (mtime, mtime))
    return log


def test_the_newest_pod_of_a_name_and_its_previous_run(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    _start(store, "ns", "p", "old-uid", 0, mtime=1_000)
    _start(store, "ns", "p", "new-uid", 0, mtime=2_000)
    newest = _start(store, "ns", "p", "new-uid", 1, mtime=2_000)
    _start(store, "ns", "p-2", "other", 0, mtime=3_000)  # a longer name, not this pod
    _start(store, "other", "p", "elsewhere", 0, mtime=3_000)  # another namespace
    assert store.find("ns", "p", "step", previous=False) == newest
    previous = store.find("ns", "p", "step", previous=True)
    assert previous is not None and previous.read_text() == "new-uid run 0\n"
    assert store.find("ns", "p", "sidecar", previous=False) is None
    assert store.find("ns", "nope", "step", previous=False) is None


def test_a_deleted_pod_has_no_log_and_an_older_one_of_its_name_is_found(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    older = _start(store, "ns", "p", "a", 0, mtime=1_000)
    _start(store, "ns", "p", "b", 0, mtime=2_000)
    shutil.rmtree(store.pod_dir("ns", "p", "b"))
    assert store.find("ns", "p", "step", previous=False) == older
    shutil.rmtree(store.pod_dir("ns", "p", "a"))
    assert store.find("ns", "p", "step", previous=False) is None


def test_a_pod_from_before_the_agent_restarted_is_found(tmp_path: Path) -> None:
    log = _start(LogStore(tmp_path), "ns", "p", "uid", 0, mtime=1_000)
    assert LogStore(tmp_path).find("ns", "p", "step", previous=False) == log


def test_deleted_pods_are_forgotten(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    for i in range(3_000):
        shutil.rmtree(_start(store, "ns", f"p{i}", "uid", 0, mtime=1_000).parent.parent)
    live = _start(store, "ns", "live", "uid", 0, mtime=1_000)
    assert len(store._dirs) < 2_100  # pruned as it grew, not one entry per pod ever seen
    assert store.find("ns", "live", "step", previous=False) == live
