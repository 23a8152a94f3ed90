"""`helm install` and `helm upgrade` of the chart against a real apiserver: the CRDs upgrade;
and every ci/*-values.yaml rendered and applied server-side (dry run).

The chart's CRDs are templates (templates/crds/, see taskforge/api/crdchart.py), so a
`helm upgrade` must change a CRD's schema in place: same object (uid), new field accepted,
objects stored under the old schema still there. The previous chart is the current one with
an older schema: crdgen's Workflow CRD without `spec.description`, rendered by the same
template generator.

Isolation: the CRDs of the session (the `taskforge.io` group, used by every other e2e test)
are never touched. Both charts are copies whose CRDs serve a random group instead, and the
release runs without the admission webhooks (cluster-wide, failurePolicy Fail).
"""

from __future__ import annotations

import copy
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster.testing import ClusterUnderTest
from taskforge.api import crdchart, crdgen

from tests.e2e.helm_kit import (
    CHART,
    CRD_NAMES,
    ROOT,
    by_kind,
    helm_binary,
    render,
    run_helm,
    to_yaml,
    wait_established,
)

pytestmark = pytest.mark.e2e

OLD_FIELD = "description"  # in the new schema of Workflow.spec only


def _crd_in_group(res: crdgen.Resource, group: str, older: bool) -> dict[str, Any]:
    crd = copy.deepcopy(crdgen.crd(res))
    crd["metadata"]["name"] = f"{res.plural}.{group}"
    crd["spec"]["group"] = group
    if older and res.kind == "Workflow":
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        del spec["properties"][OLD_FIELD]
    return crd


def chart_copy(dest: Path, group: str, *, older: bool) -> Path:
    """The chart, with its CRD templates serving `group` (and the old schema if `older`)."""
    shutil.copytree(CHART, dest)
    for res in crdgen.RESOURCES:
        path = dest / "templates" / "crds" / crdgen.file_name(res)
        path.write_text(crdchart.chart_template(_crd_in_group(res, group, older)))
    if older:
        meta = yaml.safe_load((dest / "Chart.yaml").read_text())
        meta["version"] = "0.0.1"
        (dest / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return dest


class Release:
    """One helm release of a chart copy in a test namespace; uninstalled, CRDs deleted after."""

    def __init__(self, cluster: ClusterUnderTest, namespace: str, group: str) -> None:
        self.cluster, self.namespace, self.group = cluster, namespace, group
        self.name = f"tf-{uuid.uuid4().hex[:8]}"
        self.helm = helm_binary()
        self.crds = [f"{res.plural}.{group}" for res in crdgen.RESOURCES]

    def helm_cmd(self, *args: str, check: bool = True) -> str:
        proc = run_helm(self.helm, *args, "--kubeconfig", str(self.cluster.kubeconfig),
                        "--namespace", self.namespace, check=check)
        return proc.stdout + proc.stderr

    def apply(self, verb: str, chart: Path) -> str:
        return self.helm_cmd(verb, self.name, str(chart), "--set", "admission.enabled=false")

    def crd(self, kind_plural: str) -> dict[str, Any]:
        out = self.cluster.kubectl("get", "crd", f"{kind_plural}.{self.group}", "-o", "json")
        crd: dict[str, Any] = json.loads(out.stdout)
        return crd

    def cleanup(self) -> None:
        self.helm_cmd("uninstall", self.name, check=False)
        self.cluster.kubectl("delete", "crd", *self.crds, "--ignore-not-found", "--wait=false",
                             check=False)


@pytest.fixture
def release(cluster: ClusterUnderTest, namespace: str) -> Iterator[Release]:
    rel = Release(cluster, namespace, f"up-{uuid.uuid4().hex[:8]}.example.com")
    try:
        yield rel
    finally:
        rel.cleanup()


def _workflow(group: str, name: str, **spec: Any) -> str:
    body = {"apiVersion": f"{group}/v1alpha1", "kind": "Workflow", "metadata": {"name": name},
            "spec": {"steps": [{"name": "hi", "log": {"message": "hi"}}], **spec}}
    return yaml.safe_dump(body)


def _spec_fields(crd: dict[str, Any]) -> set[str]:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return set(schema["properties"]["spec"]["properties"])


def test_helm_upgrade_changes_a_crd_schema_in_place(
    release: Release, namespace: str, tmp_path: Path
) -> None:
    old = chart_copy(tmp_path / "old", release.group, older=True)
    new = chart_copy(tmp_path / "new", release.group, older=False)
    cluster = release.cluster

    release.apply("install", old)
    wait_established(cluster, release.crds)
    before = release.crd("workflows")
    assert OLD_FIELD not in _spec_fields(before)
    assert before["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_workflow(release.group, "kept"))
    # The old schema refuses the new field (kubectl's strict field validation).
    refused = cluster.kubectl("apply", "-n", namespace, "--dry-run=server", "-f", "-",
                              input=_workflow(release.group, "new", description="x"),
                              check=False)
    assert refused.returncode != 0
    assert f'unknown field "spec.{OLD_FIELD}"' in refused.stderr, refused.stderr

    release.apply("upgrade", new)
    after = release.crd("workflows")
    assert after["metadata"]["uid"] == before["metadata"]["uid"], "replaced, not upgraded"
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    assert OLD_FIELD in _spec_fields(after)
    assert after["spec"]["versions"] == crdgen.crd(crdgen.RESOURCES[0])["spec"]["versions"]
    wait_established(cluster, release.crds)
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=_workflow(release.group, "new", description="x"))
    got = cluster.kubectl("get", f"workflows.{release.group}", "-n", namespace, "-o", "name")
    assert sorted(got.stdout.split()) == [f"workflow.{release.group}/kept",
                                          f"workflow.{release.group}/new"]

    # crds.keep: uninstalling leaves the CRDs, and the Workflows with them.
    release.helm_cmd("uninstall", release.name)
    assert release.crd("workflows")["metadata"]["uid"] == before["metadata"]["uid"]
    assert "kept" in cluster.kubectl("get", f"workflows.{release.group}", "-n", namespace,
                                     "-o", "name").stdout


def crds_folder_chart(dest: Path, group: str) -> Path:
    """Chart 0.1.0's layout: the CRDs as plain files in the chart's crds/ folder (Helm installs
    them once, unowned), no CRD templates."""
    shutil.copytree(CHART, dest)
    shutil.rmtree(dest / "templates" / "crds")
    (dest / "crds").mkdir()
    for res in crdgen.RESOURCES:
        crd = _crd_in_group(res, group, older=True)
        (dest / "crds" / crdgen.file_name(res)).write_text(yaml.safe_dump(crd, sort_keys=False))
    return dest


def test_upgrade_from_the_crds_folder_chart_after_adoption(
    release: Release, namespace: str, tmp_path: Path
) -> None:
    """From chart 0.1.0 (CRDs in crds/): Helm refuses to take over CRDs no release owns; the
    label and annotations docs/install.md gives let the release adopt them, and the upgrade
    then changes their schema in place."""
    old = crds_folder_chart(tmp_path / "old", release.group)
    new = chart_copy(tmp_path / "new", release.group, older=False)
    cluster = release.cluster
    release.apply("install", old)
    wait_established(cluster, release.crds)
    before = release.crd("workflows")
    assert "meta.helm.sh/release-name" not in before["metadata"].get("annotations", {})

    refused = run_helm(release.helm, "upgrade", release.name, str(new), "--set",
                       "admission.enabled=false", "--kubeconfig", str(cluster.kubeconfig),
                       "--namespace", namespace, check=False)
    assert refused.returncode != 0
    assert "invalid ownership metadata" in refused.stderr, refused.stderr

    for crd in release.crds:  # docs/install.md, "Upgrading from chart 0.1.0"
        cluster.kubectl("label", "crd", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite")
        cluster.kubectl("annotate", "crd", crd, "--overwrite",
                        f"meta.helm.sh/release-name={release.name}",
                        f"meta.helm.sh/release-namespace={namespace}")
    release.apply("upgrade", new)
    after = release.crd("workflows")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert OLD_FIELD in _spec_fields(after)
    assert after["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


# --- every ci/*-values.yaml, rendered and applied server-side ---------------------------

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))


@pytest.fixture(scope="module")
def crds(cluster: ClusterUnderTest) -> ClusterUnderTest:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    wait_established(cluster, CRD_NAMES)
    return cluster


@pytest.fixture
def served(cluster: ClusterUnderTest) -> Iterator[list[str]]:
    """Two fresh namespaces standing in for a ci file's watchNamespaces."""
    names = [f"e2e-ci-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        cluster.kubectl("create", "namespace", name)
    try:
        yield names
    finally:
        for name in names:
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize("values", CI_VALUES, ids=[p.name for p in CI_VALUES])
def test_ci_values_apply_server_side(
    crds: ClusterUnderTest, namespace: str, served: list[str], values: Path
) -> None:
    info = json.loads(crds.kubectl("version", "-o", "json").stdout)
    args = ["--values", str(values)]
    if yaml.safe_load(values.read_text()).get("watchNamespaces"):
        args += ["--set", f"watchNamespaces={{{','.join(served)}}}"]
    manifests = render(helm_binary(), *args, release=f"tf-{uuid.uuid4().hex[:8]}",
                       namespace=namespace,
                       kube_version=info["serverVersion"]["gitVersion"].lstrip("v"))
    # The ServiceAccount admission plugin wants a pod's account to exist: those for real.
    accounts = by_kind(manifests, "ServiceAccount")
    crds.kubectl("apply", "--server-side", "-f", "-", input=to_yaml(accounts))
    try:
        proc = crds.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server",
                            "-f", "-", input=to_yaml(manifests), check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("serverside-applied (server dry run)") == len(manifests), (
            proc.stdout)
    finally:
        cluster_scoped = [a for a in accounts if a["metadata"]["namespace"] != namespace]
        if cluster_scoped:
            crds.kubectl("delete", "--ignore-not-found", "-f", "-",
                         input=to_yaml(cluster_scoped), check=False)
