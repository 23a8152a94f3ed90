"""Shared pytest set-up for every test directory.

Kept deliberately light: unit and engine tests must not pay for the e2e
machinery, which lives in ``tests/e2e/conftest.py`` (the local cluster) and is
only imported when e2e tests are collected.
"""

from __future__ import annotations

import sys
from pathlib import Path

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
