"""The chart gives the UI server the run archive (issue 18 item 3): with `ui.enabled` and
`archive.urlSecret.name`, the UI Deployment reads TASKFORGE_ARCHIVE_URL from the very Secret
reference the operator uses; without an archive it has no such variable. Offline (helm only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.helm_kit import (
    CHART,
    by_kind,
    container_env,
    helm_binary,
    local_kube_version,
    render,
    run_helm,
)

pytestmark = pytest.mark.e2e

ARCHIVE = ["--set", "ui.enabled=true", "--set", "archive.urlSecret.name=pg-archive"]


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def _deployments(manifests: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(operator, ui) by their component label."""
    found = {d["metadata"]["labels"].get("app.kubernetes.io/component"): d
             for d in by_kind(manifests, "Deployment")}
    ui = found.pop("ui")
    (operator,) = found.values()
    return operator, ui


def test_ui_reads_the_archive_from_the_operators_secret(helm: Path) -> None:
    operator, ui = _deployments(render(helm, *ARCHIVE, "--set", "archive.urlSecret.key=dsn"))
    expected = {"secretKeyRef": {"name": "pg-archive", "key": "dsn"}}
    assert container_env(ui)["TASKFORGE_ARCHIVE_URL"] == expected
    assert container_env(operator)["TASKFORGE_ARCHIVE_URL"] == expected
    # only the URL: retention is the operator's business
    assert not {n for n in container_env(ui) if n.startswith("TASKFORGE_ARCHIVE_RETENTION")}
    assert "postgresql://" not in yaml.safe_dump(ui)


def test_ui_without_an_archive_has_no_archive_url(helm: Path) -> None:
    operator, ui = _deployments(render(helm, "--set", "ui.enabled=true"))
    assert "TASKFORGE_ARCHIVE_URL" not in container_env(ui)
    assert "TASKFORGE_ARCHIVE_URL" not in container_env(operator)


def test_lint_strict_with_ui_and_archive(helm: Path) -> None:
    proc = run_helm(helm, "lint", "--strict", "--kube-version", local_kube_version(),
                    str(CHART), *ARCHIVE)
    assert "0 chart(s) failed" in proc.stdout
