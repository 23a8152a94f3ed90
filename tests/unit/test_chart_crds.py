"""The Helm chart's CRDs are copies of the generated ones in crds/.

Helm installs the files of a chart's crds/ folder verbatim. They are copies (symlinks out
of the chart break `helm package` and some GitOps tools), so this test fails as soon as
`make crds` changes crds/ without `hack/sync-chart-crds.sh` being run.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
REPO_CRDS = ROOT / "crds"
CHART = ROOT / "charts" / "taskforge"
CHART_CRDS = CHART / "crds"
SYNC = ROOT / "hack" / "sync-chart-crds.sh"
FIX = "run hack/sync-chart-crds.sh"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.yaml"))}


def test_chart_crds_are_the_generated_crds() -> None:
    repo, chart = _files(REPO_CRDS), _files(CHART_CRDS)
    assert repo, "crds/ holds no CRDs (make crds)"
    assert sorted(chart) == sorted(repo), f"the chart's CRD files differ from crds/: {FIX}"
    stale = [name for name in repo if chart[name] != repo[name]]
    assert not stale, f"stale CRDs in charts/taskforge/crds: {stale}: {FIX}"
    for path in CHART_CRDS.iterdir():
        assert not path.is_symlink(), f"{path.name}: copy it, do not link it: {FIX}"
        assert path.suffix == ".yaml", f"{path.name}: only CRD manifests belong there"


def test_chart_crds_are_crds_of_taskforge() -> None:
    kinds = set()
    for path in CHART_CRDS.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["apiVersion"] == "apiextensions.k8s.io/v1", path.name
            assert doc["kind"] == "CustomResourceDefinition", path.name
            assert doc["spec"]["group"] == "taskforge.io", path.name
            kinds.add(doc["spec"]["names"]["kind"])
    assert {"Workflow", "WorkflowRun"} <= kinds


def test_chart_app_version_is_the_project_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]


def test_sync_script_copies_and_prunes(tmp_path: Path) -> None:
    """The script on a scratch tree: a changed CRD is copied, a removed one pruned."""
    (tmp_path / "hack").mkdir()
    shutil.copy2(SYNC, tmp_path / "hack" / SYNC.name)
    src = tmp_path / "crds"
    dst = tmp_path / "charts" / "taskforge" / "crds"
    src.mkdir()
    dst.mkdir(parents=True)
    (src / "a.yaml").write_text("kind: A\n")
    (src / "b.yaml").write_text("kind: B (new)\n")
    (dst / "b.yaml").write_text("kind: B (old)\n")
    (dst / "gone.yaml").write_text("kind: Gone\n")

    proc = subprocess.run(["bash", str(tmp_path / "hack" / SYNC.name)], capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _files(dst) == _files(src)
    again = subprocess.run(["bash", str(tmp_path / "hack" / SYNC.name)], capture_output=True,
                           text=True, timeout=30, check=True)
    assert again.stdout == "", "a second run has nothing to do"
