"""The control plane comes up on a slow machine too.

CI once failed before any test ran: on a cold machine kube-apiserver took longer
to open its port than kube-controller-manager took to ask it for a ConfigMap, and
the controller manager exits at once when that connection is refused. These tests
make the apiserver (or the controller manager's first attempt) slow or broken on
purpose, with wrapper scripts around the real binaries, and expect a working
control plane anyway.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from localcluster import default_bin_dir
from localcluster.controlplane import ControlPlane

pytestmark = pytest.mark.local_agent

REAL_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")


def _bin_dir_with_wrapper(tmp_path: Path, name: str, script: str) -> Path:
    """A bin dir of symlinks to the real binaries, with ``name`` replaced by ``script``."""
    real = default_bin_dir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for binary in REAL_BINARIES:
        if binary != name:
            (bin_dir / binary).symlink_to(real / binary)
    wrapper = bin_dir / name
    wrapper.write_text(script.replace("REAL", str(real / name)))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def _assert_controllers_work(plane: ControlPlane) -> None:
    status, body = plane.get("/api/v1/namespaces/default/serviceaccounts/default")
    assert status == 200, body
    assert plane.controller_manager is not None and plane.controller_manager.alive()


def test_controller_manager_waits_for_a_slow_apiserver(tmp_path: Path) -> None:
    bin_dir = _bin_dir_with_wrapper(
        tmp_path, "kube-apiserver", '#!/bin/sh\nsleep 4\nexec REAL "$@"\n'
    )
    plane = ControlPlane(tmp_path / "cp", bin_dir)
    try:
        plane.start(timeout=90)
        _assert_controllers_work(plane)
    finally:
        plane.stop()


def test_a_controller_manager_that_exits_at_start_up_is_started_again(tmp_path: Path) -> None:
    marker = tmp_path / "first-attempt-done"
    bin_dir = _bin_dir_with_wrapper(
        tmp_path, "kube-controller-manager",
        f'#!/bin/sh\nif [ ! -e {marker} ]; then touch {marker}; '
        'echo "simulated start-up failure" >&2; exit 1; fi\nexec REAL "$@"\n',
    )
    plane = ControlPlane(tmp_path / "cp", bin_dir)
    try:
        plane.start(timeout=90)
        _assert_controllers_work(plane)
        assert marker.exists()
        log = (tmp_path / "cp" / "logs" / "kube-controller-manager.log").read_text()
        assert "simulated start-up failure" in log
        assert log.count("starting kube-controller-manager") == 2
    finally:
        plane.stop()


def test_a_controller_manager_that_always_exits_is_reported(tmp_path: Path) -> None:
    bin_dir = _bin_dir_with_wrapper(
        tmp_path, "kube-controller-manager", '#!/bin/sh\necho "broken for good" >&2\nexit 3\n'
    )
    plane = ControlPlane(tmp_path / "cp", bin_dir)
    with pytest.raises(Exception, match=r"kube-controller-manager exited with 3:[\s\S]*broken"):
        plane.start(timeout=90)
    assert all(not p.alive() for p in plane.processes())
    assert os.path.exists(tmp_path / "cp" / "logs" / "kube-controller-manager.log")
