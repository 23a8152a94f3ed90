"""The chart's alerts and dashboard (issue 16), offline: helm renders them, promtool checks
and unit-tests the rules with input series (tests/promtool/alerts_test.yaml), and every query
of both names a metric the operator exports. The README's metric table is the module's.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram
from taskforge.adapters import metrics

from tests.e2e.helm_kit import CHART, ROOT, helm_binary, one, render

PROMTOOL_TESTS = ROOT / "tests" / "promtool" / "alerts_test.yaml"
METRIC = re.compile(r"\btaskforge_[a-z_]+\b")


@cache
def promtool() -> str:
    """Debian's promtool, unpacked into the cache by hack/setup.sh (hack/build-promtool.sh)."""
    out = subprocess.run([str(ROOT / "hack/build-promtool.sh")], check=True,
                         capture_output=True, text=True, timeout=600)
    return out.stdout.strip().splitlines()[-1]


def exported() -> set[str]:
    """Every series name the operator can export (counters' _total, histograms' parts)."""
    names: set[str] = set()
    for collector in vars(metrics).values():
        if not isinstance(collector, Counter | Gauge | Histogram):
            continue
        family = next(iter(collector.describe()))
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    return names


def unknown_metrics(queries: list[str]) -> set[str]:
    known = exported()
    return {name for q in queries for name in METRIC.findall(q) if name not in known}


def rules(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(manifests, "PrometheusRule")["spec"]
    return spec


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render(helm_binary(), "--set", "metrics.prometheusRule.enabled=true",
                  "--set-json", "metrics.prometheusRule.failedRunRatio=0.25",
                  "--set", "metrics.prometheusRule.labels.release=kube-prom",
                  "--set", "metrics.dashboard.enabled=true")


def test_off_by_default() -> None:
    manifests = render(helm_binary())
    assert "PrometheusRule" not in {m["kind"] for m in manifests}
    assert not [m for m in manifests if m["kind"] == "ConfigMap"
                and m["metadata"]["name"].endswith("-dashboard")]


def test_promtool_checks_and_tests_the_rendered_rules(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    rule = one(rendered, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prom"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules(rendered)))
    shutil.copy(PROMTOOL_TESTS, tmp_path / "alerts_test.yaml")
    checked = subprocess.run([promtool(), "check", "rules", str(tmp_path / "rules.yaml")],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout
    tested = subprocess.run([promtool(), "test", "rules", "alerts_test.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_tested_and_names_existing_metrics(rendered: list[dict[str, Any]]) -> None:
    alerts = [r for g in rules(rendered)["groups"] for r in g["rules"]]
    assert unknown_metrics([a["expr"] for a in alerts]) == set()
    assert "> 0.25" in next(a["expr"] for a in alerts if a["alert"] == "TaskforgeRunsFailing")
    cases = yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]
    tested = {c["alertname"] for t in cases for c in t.get("alert_rule_test", ())
              if c.get("exp_alerts")}
    assert tested == {a["alert"] for a in alerts}


def test_dashboard_configmap_carries_the_sidecar_label_and_valid_queries(
    rendered: list[dict[str, Any]]
) -> None:
    (cm,) = [m for m in rendered if m["kind"] == "ConfigMap"
             and m["metadata"]["name"] == "taskforge-dashboard"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["taskforge.json"])
    assert dashboard == json.loads((CHART / "files" / "dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries.append(dashboard["templating"]["list"][1]["definition"])
    assert len(queries) > 20
    assert unknown_metrics(queries) == set()
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("phase", "duration", "hand-off", "queue", "redis", "webhook"):
        assert topic in titles


def test_the_check_finds_a_misspelt_metric() -> None:
    assert unknown_metrics(["rate(taskforge_runs_finished_total[5m])",
                            "taskforge_run_finished_total"]) == {"taskforge_run_finished_total"}


def test_the_readme_metric_table_is_generated_from_the_module() -> None:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- metrics-table:start -->\n")[1].split(
        "\n<!-- metrics-table:end -->")[0]
    assert block == metrics.metrics_table(), "run: python -m taskforge.adapters.metrics"
