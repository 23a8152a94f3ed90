"""The chart's values: schema, documentation and the ci/ value files (offline: helm, helm-docs).

* values.schema.json closes every object (`additionalProperties: false`, or a typed map), so a
  misspelt key (`resources.limits.memroy`, `extraEnv[].valeu`) fails the install instead of
  being ignored; every key of values.yaml is in the schema.
* Every value carries a `# --` comment, and charts/taskforge/README.md is what helm-docs
  (built from its Go module by hack/build-bins.sh) makes of them: the test fails on drift.
* Each ci/*-values.yaml passes `helm lint --strict` (test_helm_install.py applies them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.helm_kit import (
    CHART,
    by_kind,
    helm_binary,
    local_kube_version,
    one,
    render,
    run_helm,
)

pytestmark = pytest.mark.e2e

SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# Helm's own: a parent chart may set any global.
OPEN_ON_PURPOSE = {"global"}


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


@pytest.fixture(scope="module")
def helm_docs(helm: Path) -> Path:
    path = helm.parent / "helm-docs"
    assert path.exists(), f"no helm-docs at {path} (run hack/setup.sh)"
    return path


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _objects(node: dict[str, Any], path: str, seen: set[int]) -> Iterator[tuple[str, Any]]:
    """Every object node of the schema (definitions followed once), with its path."""
    node = _resolve(node)
    if id(node) in seen:
        return
    seen.add(id(node))
    if node.get("type") == "object" or "properties" in node:
        yield path, node
    for name, sub in node.get("properties", {}).items():
        if f"{path}.{name}".lstrip(".") not in OPEN_ON_PURPOSE:
            yield from _objects(sub, f"{path}.{name}", seen)
    for sub in node.get("patternProperties", {}).values():
        yield from _objects(sub, f"{path}.<pattern>", seen)
    if isinstance(node.get("items"), dict):
        yield from _objects(node["items"], f"{path}[]", seen)
    if isinstance(node.get("additionalProperties"), dict):
        yield from _objects(node["additionalProperties"], f"{path}{{}}", seen)
    for key in ("oneOf", "anyOf", "allOf"):
        for i, sub in enumerate(node.get(key, [])):
            yield from _objects(sub, f"{path}<{key}{i}>", seen)


def test_schema_closes_every_object() -> None:
    open_ = [path or "<root>" for path, node in _objects(SCHEMA, "", set())
             if node.get("additionalProperties") is not False
             and not isinstance(node.get("additionalProperties"), dict)]
    assert not open_, f"objects without additionalProperties: false (or a typed map): {open_}"


def _schema_at(path: list[str]) -> dict[str, Any] | None:
    node = _resolve(SCHEMA)
    for key in path:
        props = node.get("properties", {})
        if key in props:
            node = _resolve(props[key])
        elif isinstance(node.get("additionalProperties"), dict):
            node = _resolve(node["additionalProperties"])
        else:
            return None
    return node


def _value_paths(value: Any, path: list[str]) -> Iterator[list[str]]:
    yield path
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _value_paths(sub, [*path, key])


def test_every_value_is_in_the_schema() -> None:
    missing = [".".join(p) for p in _value_paths(VALUES, []) if p and _schema_at(p) is None]
    assert not missing, f"values.yaml keys the schema does not know: {missing}"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--set", "resources.limits.memroy=1Gi"], "'memroy' not allowed"),
        (["--set", "extraEnv[0].name=A", "--set", "extraEnv[0].valeu=b"], "'valeu' not allowed"),
        (["--set", "extraVolumes[0].name=v", "--set", "extraVolumes[0].hostPath.path=/"],
         "'hostPath' not allowed"),
        (["--set", "affinity.nodeAffinity.requiredDuringScheduling=x"], "not allowed"),
        (["--set", "networkPolicy.enabeld=true"], "'enabeld' not allowed"),
        (["--set", "image.digest=latest"], "image/digest"),
        (["--set", "stepPolicy.namespaces[0].namespace=a",
          "--set", "stepPolicy.namespaces[0].image={x}"], "'image' not allowed"),
    ],
    ids=["memroy", "valeu", "hostPath", "affinity", "enabeld", "digest", "stepPolicy"],
)
def test_schema_rejects_misspelt_and_unsafe_values(
    helm: Path, args: list[str], complaint: str
) -> None:
    proc = run_helm(helm, "template", "t", str(CHART), "--kube-version", local_kube_version(),
                    *args, check=False)
    assert proc.returncode != 0, f"{args} accepted"
    assert "schema" in proc.stderr and complaint in proc.stderr, proc.stderr


def test_every_value_has_a_doc_comment(helm_docs: Path, tmp_path: Path) -> None:
    """helm-docs lists each documented key, and each undocumented leaf of an undocumented
    parent with an empty description: no row may be empty. (A `# --` comment above a key is
    its AutoDescription; `# key -- text` elsewhere its Description; a plain `#` is neither.)"""
    chart = tmp_path / "taskforge"
    shutil.copytree(CHART, chart)
    (chart / "keys.gotmpl").write_text(
        "{{ range .Values }}{{ .Key }}\t{{ .Description }}{{ .AutoDescription }}\n{{ end }}")
    proc = subprocess.run([str(helm_docs), "--chart-search-root", str(tmp_path),
                           "--template-files", "keys.gotmpl", "--output-file", "KEYS"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t", 1) for line in (chart / "KEYS").read_text().splitlines() if line]
    assert len(rows) > 50
    undocumented = [key for key, description in rows if not description.strip()]
    assert not undocumented, f"values without a `# --` comment: {undocumented}"


def test_chart_readme_is_generated_by_helm_docs(helm_docs: Path, tmp_path: Path) -> None:
    chart = tmp_path / "taskforge"
    shutil.copytree(CHART, chart)
    proc = subprocess.run([str(helm_docs), "--chart-search-root", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    want = (chart / "README.md").read_text()
    assert (CHART / "README.md").read_text() == want, (
        "charts/taskforge/README.md drifted from values.yaml: run `make chart-docs`")
    assert "| resources | object |" in want and "Creating a WorkflowRun is as powerful" in want


@pytest.mark.parametrize("values", CI_VALUES, ids=[p.name for p in CI_VALUES])
def test_ci_values_lint_strict(helm: Path, values: Path) -> None:
    proc = run_helm(helm, "lint", "--strict", "--kube-version", local_kube_version(),
                    str(CHART), "--values", str(values))
    assert "0 chart(s) failed" in proc.stdout


def test_there_are_at_least_four_ci_value_files() -> None:
    assert len(CI_VALUES) >= 4, CI_VALUES


def test_image_digest_extra_env_volumes_and_network_policy(helm: Path) -> None:
    manifests = render(helm, "--values", str(CHART / "ci" / "hardened-values.yaml"))
    deployment = one(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    digest = "sha256:" + "0123456789abcdef" * 4
    assert container["image"] == f"registry.example.com/platform/taskforge@{digest}"
    env = {e["name"]: e for e in container["env"]}
    assert env["SSL_CERT_FILE"]["value"] == "/etc/redis-ca/ca.crt"
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert {"name": "redis-ca", "mountPath": "/etc/redis-ca", "readOnly": True} in container[
        "volumeMounts"]
    assert {"name": "redis-ca", "secret": {"secretName": "redis-ca", "items": [
        {"key": "ca.crt", "path": "ca.crt"}]}} in pod["volumes"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # still there

    policy = one(manifests, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"][
        "matchLabels"]
    (ingress,) = policy["spec"]["ingress"]
    assert {p["port"] for p in ingress["ports"]} == {"http", "admission"}
    assert len(ingress["from"]) == 2
    egress_ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]]
    assert egress_ports == [53, 53, 443, 6443, 6379]
    assert not by_kind(render(helm), "NetworkPolicy"), "off by default"

    policies = by_kind(manifests, "ValidatingAdmissionPolicy")
    assert [p["metadata"]["name"] for p in policies] == [
        "taskforge-step-policy-team-a", "taskforge-step-policy-team-b"]
    crds = by_kind(manifests, "CustomResourceDefinition")
    assert crds and all("annotations" not in c["metadata"] for c in crds), "crds.keep=false"


def test_helm_test_hook_runs_a_one_step_workflow(helm: Path) -> None:
    manifests = [m for m in render(helm) if "helm.sh/hook" in m["metadata"].get("annotations",
                                                                                   {})]
    assert sorted(m["kind"] for m in manifests) == [
        "Pod", "Role", "RoleBinding", "ServiceAccount", "Workflow"]
    assert {m["metadata"]["annotations"]["helm.sh/hook"] for m in manifests} == {"test"}
    workflow = one(manifests, "Workflow")
    assert len(workflow["spec"]["steps"]) == 1
    pod = one(manifests, "Pod")
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["taskforge", "--namespace", "taskforge-system", "run",
                                    workflow["metadata"]["name"], "--watch"]
    assert pod["spec"]["serviceAccountName"] == one(manifests, "ServiceAccount")["metadata"][
        "name"]
    # Hooks first: the RBAC, then the Workflow, then the pod (weight 0).
    weights = {m["kind"]: int(m["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))
               for m in manifests}
    assert weights["Role"] < weights["Workflow"] < weights["Pod"]
    # With watchNamespaces, the test runs in the first namespace served.
    served = render(helm, "--set", "watchNamespaces={team-a,team-b}")
    assert one(served, "Pod")["metadata"]["namespace"] == "team-a"
    assert not [m for m in render(helm, "--set", "tests.enabled=false") if m["kind"] == "Pod"]
