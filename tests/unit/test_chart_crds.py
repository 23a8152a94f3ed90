"""The Helm chart's CRDs are templates generated with crds/ (taskforge.api.crdgen).

Helm installs a chart's crds/ folder once and never upgrades it, so the chart has none: its
CRDs are templates under templates/crds/, gated by `crds.install` and `crds.keep`. Rendered
with helm they must equal the generated CRDs (tests/e2e/test_helm_render.py); here, without
helm, their text must be what crdgen writes, and their escaping must round-trip.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import taskforge
import yaml
from taskforge.api import crdchart, crdgen

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "taskforge"


def test_the_chart_has_no_crds_folder() -> None:
    """Helm would install such files unmanaged, and never upgrade them."""
    assert not (CHART / "crds").exists(), "charts/taskforge/crds: the CRDs are templates now"


def test_chart_templates_are_the_generated_ones() -> None:
    assert crdgen.CHART_CRD_DIR == CHART / "templates" / "crds"
    have = {p.name: p.read_text() for p in sorted(crdgen.CHART_CRD_DIR.iterdir())}
    assert have == crdgen.generate_chart(), "run `python -m taskforge.api.crdgen`"


def test_check_mode_reports_chart_drift_and_strays(tmp_path: Path) -> None:
    plain, chart = tmp_path / "crds", tmp_path / "chart"
    assert crdgen.main(["--out", str(plain), "--chart-out", str(chart)]) == 0
    assert crdgen.main(["--check", "--out", str(plain), "--chart-out", str(chart)]) == 0
    victim = chart / crdgen.file_name(crdgen.RESOURCES[1])
    victim.write_text(victim.read_text().replace("helm.sh/resource-policy: keep", ""))
    assert crdgen.main(["--check", "--out", str(plain), "--chart-out", str(chart)]) == 1
    crdgen.main(["--out", str(plain), "--chart-out", str(chart)])
    (chart / "old.yaml").write_text("kind: CustomResourceDefinition\n")
    assert "old.yaml" in crdgen.drift(plain, chart)


def _unescape(text: str) -> str:
    """What Helm makes of the escaped text, for the only action the generator writes."""
    return text.replace('{{ "{{" }}', "{{")


def test_template_body_is_the_crd_with_braces_escaped() -> None:
    for res in crdgen.RESOURCES:
        text = crdchart.chart_template(crdgen.crd(res))
        head, _, body = text.partition("\nspec:\n")
        assert body.endswith("{{- end }}\n")
        body = body.removesuffix("{{- end }}\n")
        # Every action left in the body is the escape itself: nothing else would execute.
        actions = re.findall(r"\{\{.*?\}\}", body)
        assert set(actions) <= {'{{ "{{" }}'}, set(actions)
        spec = yaml.safe_load(_unescape("spec:\n" + body))["spec"]
        assert spec == crdgen.crd(res)["spec"]
        assert "{{- if .Values.crds.install }}" in head
        assert "{{- if .Values.crds.keep }}" in head
        assert f"name: {res.plural}.{crdgen.GROUP}" in head


def test_descriptions_with_step_templates_survive() -> None:
    """The CRDs quote `{{ params.x }}` in descriptions: the generator must escape them."""
    texts = "".join(crdgen.generate().values())
    assert "{{ params." in texts
    assert crdchart.escape("a {{ b }} c") == 'a {{ "{{" }} b }} c'


def test_chart_app_version_is_the_project_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dynamic"] == ["version"]  # taskforge.__version__
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == taskforge.__version__
