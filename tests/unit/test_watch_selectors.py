"""The Job and pod watches ask the API server for run-labelled objects only (issue 14).

kopf's watcher builds each stream's `labelSelector` from `settings.watching.label_selectors`
(kopf._cogs.clients.watching); this fails if our settings stop selecting, or if a kopf
upgrade changes how a selector is matched to a resource.
"""

from __future__ import annotations

import json
from pathlib import Path

import kopf
import pytest
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.structs.references import Resource
from taskforge import GROUP, VERSION
from taskforge.adapters import fastjson
from taskforge.handlers.registration import decode_watch_events_fast, select_step_objects


@pytest.mark.parametrize(("resource", "selectors"), [
    (Resource("batch", "v1", "jobs"), ["taskforge.io/run"]),
    (Resource("", "v1", "pods"), ["taskforge.io/run"]),
    (Resource(GROUP, VERSION, "workflowruns"), []),
    (Resource(GROUP, VERSION, "workflows"), []),
    (Resource("", "v1", "configmaps"), []),
    (Resource("metrics.k8s.io", "v1beta1", "pods"), []),
])
def test_selectors_by_resource(resource: Resource, selectors: list[str]) -> None:
    settings = kopf.OperatorSettings()
    select_step_objects(settings)
    assert list(settings.watching.label_selectors.collect(resource)) == selectors



def test_kopf_watch_lines_decode_with_orjson() -> None:
    """kopf's stream decodes each line with its module's `json.loads`: ours once hooked."""
    assert decode_watch_events_fast()
    assert isinstance(getattr(kopf_api, "json", None), fastjson.JsonModule)
    assert decode_watch_events_fast()  # a second call keeps the hook
    source = Path(kopf_api.__file__).read_text()
    assert "json.loads(line" in source, "kopf changed how it decodes watch lines"


@pytest.mark.parametrize("text", [
    '{"a": [1, 2.5, "x", null, true], "b": {"c": "\u00e9"}}',
    b'{"n": 9223372036854775807, "m": -1}',
    '"\\ud800"',  # a lone surrogate escape: orjson refuses, the stdlib reads it
])
def test_fast_loads_agree_with_the_stdlib(text: str | bytes) -> None:
    assert fastjson.loads(text) == json.loads(text)


def test_what_the_stdlib_also_refuses_is_refused() -> None:
    with pytest.raises(json.JSONDecodeError):
        fastjson.loads('{"a": ')
