"""pydantic's JSON Schema as a Kubernetes *structural* schema, the form a CRD's
`openAPIV3Schema` must have.

Every `$ref` inlined, `anyOf: [X, null]` of optional fields collapsed into X, no titles, `type`
on every node (or `x-kubernetes-preserve-unknown-fields` for `Any` values),
`additionalProperties: false` dropped (the apiserver prunes unknown fields, and `kubectl
apply`'s strict field validation rejects them), map-key length bounds turned into CEL rules.
CEL rules and list types come from the models' `json_schema_extra`, next to the pydantic
validators they mirror. Apart from crdgen.py, which decides what goes into each CRD (columns,
the status's opaque fields) and writes the files: this is only the schema walk. Pure: no
kubernetes or kopf imports.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from taskforge.api.common import K8S_VALIDATIONS

Schema = dict[str, Any]

# The order of keys in the written YAML, for readable diffs; others follow, sorted.
_KEY_ORDER = [
    "description", "type", "format", "enum", "default", "pattern", "minLength", "maxLength",
    "minimum", "maximum", "minItems", "maxItems", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-preserve-unknown-fields", "items",
    "additionalProperties", "required", "properties", "not", "x-kubernetes-validations",
]  # fmt: skip
_RULE_KEY_ORDER = ["rule", "message", "messageExpression", "fieldPath", "reason"]


class _Converter:
    """pydantic JSON Schema (with `$defs`) -> structural schema, one node at a time."""

    def __init__(self, defs: dict[str, Schema]) -> None:
        self._defs = defs

    def node(self, src: Schema) -> Schema:
        src = self._flatten(src)
        out: Schema = {}
        key_rules: list[Schema] = []
        for key, value in src.items():
            if key in ("title", "$defs") or (key == "default" and value is None):
                continue
            if key == "additionalProperties" and value is False:
                continue  # extra="forbid": pruning and strict field validation cover it
            if key == "const":
                out["enum"] = [value]
            elif key == "description":
                out["description"] = prose(value)
            elif key == "properties":
                out["properties"] = {k: self.node(v) for k, v in value.items()}
            elif key == "items":
                out["items"] = self.node(value)
            elif key == "additionalProperties":
                if value is True or value == {}:
                    out["x-kubernetes-preserve-unknown-fields"] = True  # dict[str, Any]
                else:
                    out["additionalProperties"] = self.node(value)
            elif key == "propertyNames":
                key_rules = _key_rules(value)
            elif key == "not" and set(value) == {"required"}:
                out["not"] = copy.deepcopy(value)  # a value validation: allowed when structural
            elif key in ("anyOf", "oneOf", "allOf", "not"):
                raise ValueError(f"no structural form for {key}: {src}")
            else:
                out[key] = copy.deepcopy(value)
        if "type" not in out and "enum" in out:
            out["type"] = "string"
        if "type" not in out:
            out = {**out, "x-kubernetes-preserve-unknown-fields": True}  # Any: any JSON value
        elif out["type"] == "object" and not {"properties", "additionalProperties"} & set(out):
            out["x-kubernetes-preserve-unknown-fields"] = True
        if key_rules and "additionalProperties" not in out:
            # A dict of Any values is an object that preserves unknown fields, not a map: CEL
            # cannot range over it (the API server refuses the CRD), and a map of untyped values
            # has no CEL type. Its size bound (maxProperties) still holds.
            key_rules = []
        if key_rules:
            out[K8S_VALIDATIONS] = [*out.get(K8S_VALIDATIONS, []), *key_rules]
        if K8S_VALIDATIONS in out:
            out[K8S_VALIDATIONS] = [_ordered(r, _RULE_KEY_ORDER) for r in out[K8S_VALIDATIONS]]
        return _ordered(out, _KEY_ORDER)

    def _flatten(self, src: Schema) -> Schema:
        """Inline a `$ref` and collapse `anyOf: [X, null]`; the outer keys win (descriptions),
        except CEL rules, which add up."""
        if "$ref" in src:
            name = src["$ref"].rsplit("/", 1)[-1]
            return self._flatten(_merge(self._defs[name], _without(src, "$ref")))
        if "anyOf" in src:
            branches = [b for b in src["anyOf"] if b.get("type") != "null"]
            if len(branches) != 1:
                raise ValueError(f"only `X | None` unions have a structural form: {src}")
            outer = _without(src, "anyOf")
            if outer.get("default", 0) is None:
                del outer["default"]
            return self._flatten(_merge(branches[0], outer))
        return src


def _key_rules(names: Schema) -> list[Schema]:
    """CEL for a map's `propertyNames` bounds: structural schemas have no such keyword."""
    if set(names) - {"minLength", "maxLength"}:
        raise ValueError(f"only length bounds of map keys have a structural form: {names}")
    rules: list[Schema] = []
    if "maxLength" in names:
        most = names["maxLength"]
        rules.append({"rule": f"self.all(k, size(k) <= {most})",
                      "message": f"keys may be at most {most} characters long"})
    if "minLength" in names:
        least = names["minLength"]
        rules.append({"rule": f"self.all(k, size(k) >= {least})",
                      "message": f"keys must be at least {least} characters long"})
    return rules


def prose(text: str) -> str:
    """Docstring text as one line per paragraph: `kubectl explain` wraps lines itself."""
    paragraphs = text.strip().split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _without(src: Schema, key: str) -> Schema:
    return {k: v for k, v in src.items() if k != key}


def _merge(inner: Schema, outer: Schema) -> Schema:
    merged = {**inner, **outer}
    rules = [*inner.get(K8S_VALIDATIONS, []), *outer.get(K8S_VALIDATIONS, [])]
    if rules:
        merged[K8S_VALIDATIONS] = rules
    return merged


def _ordered(src: Schema, order: list[str]) -> Schema:
    rank = {k: i for i, k in enumerate(order)}
    return dict(sorted(src.items(), key=lambda kv: (rank.get(kv[0], len(order)), kv[0])))


def structural_schema(model: type[BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of one model, as the CRD's `openAPIV3Schema` needs it."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _Converter(raw.get("$defs", {})).node(raw)
