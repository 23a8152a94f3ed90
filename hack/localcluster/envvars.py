"""A container's environment and ``$(VAR)`` expansion, with the kubelet's semantics.

Steps and user Jobs are written against real clusters, so the rules must be
Kubernetes' own, including the odd corners: an undefined ``$(X)`` stays as is,
``$$`` escapes, ``env`` values may reference variables defined *earlier* in the
list (and from ``envFrom``), ``valueFrom`` values are never expanded, and a
missing Secret or ConfigMap key is a ``CreateContainerConfigError`` unless the
reference is optional.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol

JSON = dict[str, Any]

_OPERATOR, _OPENER, _CLOSER = "$", "(", ")"


def expand(text: str, env: Mapping[str, str]) -> str:
    """Port of k8s.io/kubernetes/third_party/forked/golang/expansion.Expand."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == _OPERATOR and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_variable(text[cursor + 1 :])
            if is_var:
                out.append(env.get(read, f"$({read})"))
            else:
                out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def _read_variable(rest: str) -> tuple[str, bool, int]:
    first = rest[0]
    if first == _OPERATOR:  # "$$" is an escaped "$"
        return _OPERATOR, False, 1
    if first == _OPENER:
        end = rest.find(_CLOSER, 1)
        if end != -1:
            return rest[1:end], True, end + 1
        return _OPERATOR + _OPENER, False, 1  # unterminated: keep literally
    return _OPERATOR + first, False, 1


class EnvError(Exception):
    """The environment cannot be built yet (kubelet: CreateContainerConfigError)."""


class ObjectSource(Protocol):
    """Reads Secrets and ConfigMaps; returns None when the object does not exist."""

    def secret(self, namespace: str, name: str) -> JSON | None: ...

    def config_map(self, namespace: str, name: str) -> JSON | None: ...


_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def container_env(
    pod: JSON, container: JSON, objects: ObjectSource, node_allocatable: Mapping[str, str]
) -> dict[str, str]:
    """The container's variables in Kubernetes' order (envFrom, then env)."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            obj = objects.config_map(namespace, ref["name"])
            data = (obj or {}).get("data") or {}
        elif "secretRef" in source:
            ref = source["secretRef"]
            obj = objects.secret(namespace, ref["name"])
            data = _decode_secret(obj)
        else:
            continue
        if obj is None:
            if ref.get("optional"):
                continue
            kind = "configmap" if "configMapRef" in source else "secret"
            raise EnvError(f'{kind} "{ref["name"]}" not found')
        for key, value in data.items():
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = value
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" in var:
            value = _value_from(pod, container, var["valueFrom"], objects, node_allocatable)
            if value is None:
                continue
            env[name] = value
        else:
            env[name] = expand(var.get("value", ""), env)
    return env


def _decode_secret(obj: JSON | None) -> dict[str, str]:
    data = (obj or {}).get("data") or {}
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}


def _value_from(
    pod: JSON,
    container: JSON,
    source: JSON,
    objects: ObjectSource,
    node_allocatable: Mapping[str, str],
) -> str | None:
    namespace = pod["metadata"]["namespace"]
    for kind in ("secretKeyRef", "configMapKeyRef"):
        if kind in source:
            ref = source[kind]
            if kind == "secretKeyRef":
                obj = objects.secret(namespace, ref["name"])
                data = _decode_secret(obj)
            else:
                obj = objects.config_map(namespace, ref["name"])
                data = (obj or {}).get("data") or {}
            what = "secret" if kind == "secretKeyRef" else "configmap"
            if obj is None or ref["key"] not in data:
                if ref.get("optional"):
                    return None
                if obj is None:
                    raise EnvError(f'{what} "{ref["name"]}" not found')
                raise EnvError(
                    f"couldn't find key {ref['key']} in {what} {namespace}/{ref['name']}"
                )
            return str(data[ref["key"]])
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in source:
        return _resource_value(pod, container, source["resourceFieldRef"], node_allocatable)
    return None


def field_value(pod: JSON, path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", "127.0.0.1"),
        "status.hostIPs": status.get("hostIP", "127.0.0.1"),
        "status.podIP": status.get("podIP", "127.0.0.1"),
        "status.podIPs": status.get("podIP", "127.0.0.1"),
    }
    if path not in simple:
        raise EnvError(f"unsupported fieldPath {path!r}")
    return str(simple[path])


_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
    "P": Decimal(10**15), "E": Decimal(10**18),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}


def parse_quantity(text: str) -> Decimal:
    m = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)", str(text).strip())
    if not m or m.group(2) not in _SUFFIX:
        raise EnvError(f"invalid quantity {text!r}")
    return Decimal(m.group(1)) * _SUFFIX[m.group(2)]


def _resource_value(
    pod: JSON, container: JSON, ref: JSON, node_allocatable: Mapping[str, str]
) -> str:
    target = container
    if ref.get("containerName"):
        all_containers = (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]
        target = next((c for c in all_containers if c["name"] == ref["containerName"]), container)
    kind, _, resource = ref["resource"].partition(".")
    resources = (target.get("resources") or {}).get(kind) or {}
    raw = resources.get(resource) or node_allocatable.get(resource)
    if raw is None:
        raise EnvError(f"unsupported resource {ref['resource']!r}")
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(max(1, math.ceil(parse_quantity(raw) / divisor)))


def node_allocatable() -> dict[str, str]:
    """This machine's CPU and memory, reported by the Node and used for limits refs."""
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
    except OSError:
        mem_kib = 4 * 1024 * 1024
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{mem_kib}Ki",
        "ephemeral-storage": "100Gi",
        "pods": "1000",
    }
