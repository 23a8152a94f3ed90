"""JSON from the API server decoded with orjson, the stdlib's decoder as the fallback.

Decoding is the largest single cost the operator pays per watch event: a run's body carries
its pinned spec and status, and each single-step run brings about a dozen events and write
responses (13.7% of the operator's CPU in a profile of 600 runs, issue 14). orjson does the
same work in a third of the time.

Where the two decoders differ, orjson is never looser: integers past 64 bits become floats,
which the API server has already done before it sends them (it decodes numbers as int64 or
float64), and what orjson refuses (NaN, lone surrogates) the stdlib decoder gets to read or
to reject, as before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)


class JsonModule:
    """Stands in for the `json` module inside a library: `loads` is ours, the rest is json's."""

    loads = staticmethod(loads)

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)
