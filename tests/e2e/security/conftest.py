"""The security suite: hostile input and faults against the real operator.

Each test states an attack, asserts it fails, and asserts the operator stayed healthy. The
fixtures are the operator suite's (one real operator per package, a fresh namespace per test).
"""

from __future__ import annotations

from tests.e2e.operator.conftest import crds, kube, operator, running_operator

__all__ = ["crds", "kube", "operator", "running_operator"]
