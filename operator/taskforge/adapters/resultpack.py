"""How a stored step result sits in its ConfigMaps, and reading it back through any client.

`results.py` stores results with the operator's kubernetes client; `taskforge get
--results` reads them with the CLI's (lightkube, with the user's kubeconfig), and the CLI's
install has no kubernetes client. So the format (names, annotations, gzip parts) and the
checked read live here, with no client at all: each caller passes a function that GETs one
ConfigMap of the namespace as a plain dict (None when it does not exist).
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable
from typing import Any

from taskforge.api.resultlog import MAX_RESULT_BYTES, digest

DATA_KEY = "result.json.gz"
PART_BYTES = 1_000_000
"""Bytes of gzip data per ConfigMap (the API server allows 1 MiB of data in one)."""
ANNOTATION_SHA = "taskforge.io/result-sha256"
ANNOTATION_SIZE = "taskforge.io/result-size"
ANNOTATION_PARTS = "taskforge.io/result-parts"
LABEL_RESULT = "taskforge.io/result"

ConfigMapReader = Callable[[str], "dict[str, Any] | None"]
"""GET one ConfigMap by name (of the result's namespace): its JSON, or None on 404."""


class ResultReadError(RuntimeError):
    """A stored result that cannot be read as it was stored (missing, altered, too big)."""


def part_name(name: str, index: int) -> str:
    return name if index == 0 else f"{name}-{index + 1}"


def read_result(namespace: str, name: str, sha256: str, read: ConfigMapReader) -> bytes:
    """The stored result's JSON, checked against its SHA-256 and capped while unzipping.

    Every field of the ConfigMaps is untrusted (anyone who may edit ConfigMaps in the
    namespace may alter them): the part count is bounded, the unzipped size is capped
    before it is all in memory, and the digest must be the one status names."""
    first = read(name)
    if first is None:
        raise ResultReadError(f"configmap {namespace}/{name} not found")
    annotations = (first.get("metadata") or {}).get("annotations") or {}
    try:
        parts = int(annotations.get(ANNOTATION_PARTS, "1"))
    except (TypeError, ValueError):
        parts = 0
    if not 1 <= parts <= 3:
        raise ResultReadError(f"configmap {namespace}/{name}: bad part count"
                              f" {annotations.get(ANNOTATION_PARTS)!r}")
    bodies = [first]
    for index in range(1, parts):
        body = read(part_name(name, index))
        if body is None:
            raise ResultReadError(f"configmap {namespace}/{part_name(name, index)} not found")
        bodies.append(body)
    try:
        packed = b"".join(base64.b64decode((b.get("binaryData") or {})[DATA_KEY]) for b in bodies)
        inflater = zlib.decompressobj(wbits=31)
        data = inflater.decompress(packed, MAX_RESULT_BYTES + 1)
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise ResultReadError(f"configmap {namespace}/{name}: unreadable: {exc}") from exc
    if len(data) > MAX_RESULT_BYTES or digest(data) != sha256:
        raise ResultReadError(f"configmap {namespace}/{name} does not hold the result status"
                              " names (SHA-256 differs)")
    return data
