"""The Job and pod watches ask the API server for run-labelled objects only (issue 14).

kopf's watcher builds each stream's `labelSelector` from `settings.watching.label_selectors`
(kopf._cogs.clients.watching); this fails if our settings stop selecting, or if a kopf
upgrade changes how a selector is matched to a resource.
"""

from __future__ import annotations

import kopf
import pytest
from kopf._cogs.structs.references import Resource

from taskforge import GROUP, VERSION
from taskforge.handlers.registration import select_step_objects


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
