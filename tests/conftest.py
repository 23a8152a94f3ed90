"""Shared pytest set-up for every test directory.

Kept deliberately light: unit and engine tests must not pay for the e2e
machinery, which lives in ``tests/e2e/conftest.py`` (the local cluster) and is
only imported when e2e tests are collected.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tests import shared helpers as ``tests.…``: make that work under the
# ``pytest`` script as it does under ``python -m pytest`` (which adds the cwd).
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# `hack/` is a package root in pyproject.toml, but a venv installed (editable)
# before hack/localcluster existed does not map it; make it importable anyway.
try:
    import localcluster  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT / "hack"))


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--node``: which node the e2e session's local cluster runs (tests/e2e/conftest.py).

    ``agent`` (the default, fast) runs every e2e test but those marked ``real_node``;
    ``kubelet`` starts a real kubelet + containerd node and runs only the tests marked
    ``real_node`` or ``both_nodes``, deselecting the rest (none is skipped).
    """
    parser.addoption(
        "--node", choices=("agent", "kubelet"),
        default=os.environ.get("TASKFORGE_E2E_NODE", "agent"),
        help="node of the e2e local cluster: agent (default) or kubelet (real node)",
    )
