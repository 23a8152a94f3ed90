"""`source .local/env` (written by `make cluster`) puts kubectl, helm and `taskforge` on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from localcluster.__main__ import TOOLS_DIR, shell_env


def test_sourcing_the_env_file_finds_taskforge_and_keeps_the_variables(tmp_path: Path) -> None:
    bins = tmp_path / "bin"
    bins.mkdir()
    (bins / "kubectl").write_text("#!/bin/sh\necho kubectl\n")
    (bins / "kubectl").chmod(0o755)
    env_file = tmp_path / "env"
    env_file.write_text(shell_env({"KUBECONFIG": "/k/config"}, [str(bins), str(TOOLS_DIR)]))
    out = subprocess.run(
        ["bash", "-c", f"source {env_file}; command -v kubectl; command -v taskforge;"
                       " echo $KUBECONFIG"],
        capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")},
    ).stdout.split()
    assert out == [str(bins / "kubectl"), str(TOOLS_DIR / "taskforge"), "/k/config"]
