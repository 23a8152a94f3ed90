"""The generated CRDs: in sync with the models, structural, documented, and sane."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from taskforge.api import crdgen

Schema = dict[str, Any]

# Argo Workflows' short names; `kubectl get wf` must keep meaning Argo where both are installed.
ARGO_SHORT_NAMES = {"wf", "wfr", "wftmpl", "cwf", "cronwf", "cwft", "clusterwftmpl", "wfeb", "wfts"}
# Keywords a structural schema may not carry (or that only pydantic emits).
FORBIDDEN_KEYS = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "nullable", "const"}


def _crds() -> dict[str, Schema]:
    return {res.kind: crdgen.crd(res) for res in crdgen.RESOURCES}


def _root(crd: Schema) -> Schema:
    schema: Schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _nodes(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with a readable path: properties, items and map values."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


def _properties(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    for node_path, node in _nodes(schema, path):
        for name, sub in node.get("properties", {}).items():
            yield f"{node_path}.{name}", sub


CRDS = _crds()
KINDS = sorted(CRDS)


def test_crds_directory_matches_the_models() -> None:
    diff = crdgen.drift()
    assert not diff, f"crds/ drifted from the models; run `python -m taskforge.api.crdgen`:\n{diff}"


def test_check_mode_reports_drift(tmp_path: Path) -> None:
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert crdgen.main(["--check", "--out", str(tmp_path)]) == 0
    victim = tmp_path / crdgen.file_name(crdgen.RESOURCES[0])
    victim.write_text(victim.read_text().replace("tfw", "wf", 1))
    assert crdgen.main(["--check", "--out", str(tmp_path)]) == 1


def test_files_hold_the_generated_objects() -> None:
    for res in crdgen.RESOURCES:
        text = (crdgen.CRD_DIR / crdgen.file_name(res)).read_text()
        assert text.startswith(crdgen.HEADER)
        assert yaml.safe_load(text) == crdgen.crd(res)


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_structural(kind: str) -> None:
    problems = []
    for path, node in _nodes(_root(CRDS[kind])):
        if "type" not in node and node.get("x-kubernetes-preserve-unknown-fields") is not True:
            problems.append(f"{path or '<root>'}: no type")
        if FORBIDDEN_KEYS & set(node):
            problems.append(f"{path}: {sorted(FORBIDDEN_KEYS & set(node))}")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties: false")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: both properties and additionalProperties")
        if node.get("default", 0) is None:
            problems.append(f"{path}: default null")
        for key in node.get("x-kubernetes-list-map-keys", []):
            if key not in node["items"].get("required", []):
                problems.append(f"{path}: list-map key {key} is not required")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kind", KINDS)
def test_metadata_is_left_to_the_apiserver(kind: str) -> None:
    assert _root(CRDS[kind])["properties"]["metadata"] == {"type": "object"}


@pytest.mark.parametrize("kind", KINDS)
def test_every_property_has_a_description(kind: str) -> None:
    missing = [
        path
        for path, prop in _properties(_root(CRDS[kind]))
        if path != ".metadata" and not prop.get("description", "").strip()
    ]
    assert not missing, f"properties without a description: {missing}"


@pytest.mark.parametrize("kind", KINDS)
def test_any_typed_fields_preserve_unknown_fields(kind: str) -> None:
    spec = _root(CRDS[kind])["properties"]["spec"]
    untyped = {path for path, node in _nodes(spec) if "type" not in node}
    # Any and dict[str, Any] fields; `items`: forEach.items (a list or a template string),
    # and the elements of the list[Any] fields (forEach status values and outputs)
    wanted = {"json", "default", "body", "params", "outputs", "items"}
    for path in untyped:
        assert path.rsplit(".", 1)[-1] in wanted, path


def test_well_known_shapes() -> None:
    workflow = _root(CRDS["Workflow"])["properties"]["spec"]["properties"]
    http = workflow["steps"]["items"]["properties"]["http"]
    assert http["properties"]["json"] == {
        "description": http["properties"]["json"]["description"],
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert http["properties"]["query"]["additionalProperties"] == {
        "type": "string",
        "maxLength": 2048,
    }
    assert http["not"] == {"required": ["json", "body"]}
    assert workflow["steps"]["x-kubernetes-list-map-keys"] == ["name"]
    assert workflow["steps"]["maxItems"] >= 1000
    name = workflow["steps"]["items"]["properties"]["name"]
    assert name["pattern"] == "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" and name["maxLength"] == 40

    run = _root(CRDS["WorkflowRun"])["properties"]
    steps = run["status"]["properties"]["steps"]
    assert steps["type"] == "object"
    assert "phase: Pending, Waiting" in steps["description"]
    cancel = run["spec"]["properties"]["cancel"]
    assert cancel["default"] is False
    assert any("oldSelf" in r["rule"] for r in cancel["x-kubernetes-validations"])


@pytest.mark.parametrize("field", ["steps", "workflowSpec"])
def test_the_runs_big_status_maps_are_opaque_to_the_api_server(field: str) -> None:
    """Typed, the API server validated, pruned and defaulted their ~25,000 nodes on every
    status write of a 1,000-step run (and coerced them on every read): 354 ms of its CPU
    per PATCH instead of 90. Their fields stay documented for `kubectl explain`."""
    status = _root(CRDS["WorkflowRun"])["properties"]["status"]["properties"]
    node = status[field]
    assert node["type"] == "object" and node["x-kubernetes-preserve-unknown-fields"] is True
    assert node["x-kubernetes-map-type"] == "atomic"  # one managedFields entry
    assert not {"properties", "additionalProperties"} & set(node)
    documented = {"steps": ["phase:", "attempts:", "nextAttemptAt:", "attemptHistory:"],
                  "workflowSpec": ["steps:", "finally:", "params:", "retry:"]}[field]
    for name in documented:
        assert f" {name} " in node["description"], name
    # the spec a run is started with is still typed and checked in full
    inline = _root(CRDS["WorkflowRun"])["properties"]["spec"]["properties"]["workflowSpec"]
    assert inline["properties"]["steps"]["x-kubernetes-list-map-keys"] == ["name"]


def test_cel_rules_are_complete_and_only_in_spec() -> None:
    for kind, crd in CRDS.items():
        root = _root(crd)
        for path, node in _nodes(root["properties"]["status"], ".status"):
            assert "x-kubernetes-validations" not in node, f"{kind}{path}"
        rules = [
            (path, rule)
            for path, node in _nodes(root)
            for rule in node.get("x-kubernetes-validations", [])
        ]
        assert rules
        for path, rule in rules:
            assert rule["rule"].strip(), path
            assert rule.get("message") or rule.get("messageExpression"), f"{kind}{path}: {rule}"
    step_rules = _root(CRDS["Workflow"])["properties"]["spec"]["properties"]["steps"]["items"]
    assert "exactly one step type" in step_rules["x-kubernetes-validations"][0]["messageExpression"]


@pytest.mark.parametrize("kind", KINDS)
def test_names_and_subresources(kind: str) -> None:
    spec = CRDS[kind]["spec"]
    names = spec["names"]
    assert spec["group"] == "taskforge.io" and spec["scope"] == "Namespaced"
    assert names["categories"] == ["taskforge"]  # not "all": `kubectl get all` stays quiet
    assert not ARGO_SHORT_NAMES & set(names["shortNames"])
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns_point_at_schema_fields(kind: str) -> None:
    crd = CRDS[kind]
    root = _root(crd)
    for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
        path = column["jsonPath"]
        if path.startswith(".metadata."):
            continue
        node = root
        for part in re.sub(r"\[[^]]*\]", "", path).lstrip(".").split("."):
            node = node["properties"][part]  # KeyError: the column names no field
            if node.get("type") == "array":
                node = node["items"]
        assert column["type"] in {"string", "integer", "date", "number", "boolean"}


def test_run_columns() -> None:
    columns = CRDS["WorkflowRun"]["spec"]["versions"][0]["additionalPrinterColumns"]
    names = [c["name"] for c in columns if not c.get("priority")]
    assert names == ["Workflow", "Phase", "Progress", "Duration", "Age"]
    columns = CRDS["Workflow"]["spec"]["versions"][0]["additionalPrinterColumns"]
    names = [c["name"] for c in columns if not c.get("priority")]
    assert names == ["Steps", "Schedule", "Last Run", "Valid", "Age"]


# Untyped (any JSON) fields: no CRD keyword bounds their bytes; the operator's check of the
# whole run object does (engine/sizes.py), and their containers have maxProperties/maxItems.
# Untyped JSON, bounded by the admission webhook's whole-spec size check (engine/sizes.py) and
# the models (forEach.items: at most 1,000 items, or a template of at most 4,096 characters).
UNTYPED_SPEC_FIELDS = {"default", "json", "body", "items"}


@pytest.mark.parametrize("kind", KINDS)
def test_every_spec_field_is_bounded(kind: str) -> None:
    """Sizes are capped at apply time: every string, list and map of a spec has a bound."""
    unbounded = []
    for path, node in _nodes(_root(CRDS[kind])["properties"]["spec"], ".spec"):
        kind_of = node.get("type")
        if kind_of == "string" and not {"maxLength", "enum", "format"} & set(node):
            unbounded.append(f"{path}: string without maxLength")
        elif kind_of == "array" and "maxItems" not in node:
            unbounded.append(f"{path}: list without maxItems")
        elif kind_of == "object" and "properties" not in node and "maxProperties" not in node:
            unbounded.append(f"{path}: map without maxProperties")
        elif kind_of is None and path.rsplit(".", 1)[-1] not in UNTYPED_SPEC_FIELDS:
            unbounded.append(f"{path}: untyped")
    assert not unbounded, "\n".join(unbounded)


def test_map_key_lengths_become_cel_rules() -> None:
    """pydantic's `propertyNames` has no structural form: crdgen turns it into CEL."""
    workflow = _root(CRDS["Workflow"])["properties"]["spec"]["properties"]
    query = workflow["steps"]["items"]["properties"]["http"]["properties"]["query"]
    assert "propertyNames" not in query
    rules = [r["rule"] for r in query["x-kubernetes-validations"]]
    assert "self.all(k, size(k) <= 253)" in rules


def test_the_spec_text_budget_is_a_cel_rule_on_both_kinds() -> None:
    workflow = _root(CRDS["Workflow"])["properties"]["spec"]
    inline = _root(CRDS["WorkflowRun"])["properties"]["spec"]["properties"]["workflowSpec"]
    for spec in (workflow, inline):
        (rule,) = [r for r in spec["x-kubernetes-validations"] if "131072" in r["rule"]]
        assert rule["fieldPath"] == ".steps"
        assert "at most 131072 characters" in rule["message"]
