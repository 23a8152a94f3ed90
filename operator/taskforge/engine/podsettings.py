"""Merging step pod settings: the chart's defaults, the Workflow's spec.pod, the step's pod.

Pure. The rules, most specific level last:

* single values (serviceAccountName, automountServiceAccountToken, priorityClassName, each of
  affinity's three parts): the most specific level that sets one wins;
* maps (nodeSelector, labels, annotations, resources.requests, resources.limits): merged key by
  key, the more specific level winning a key;
* named lists (imagePullSecrets by name, volumes by name, volumeMounts by mountPath): merged by
  that key, the more specific level winning it, in first-seen order;
* tolerations: all of them, each once.

So a chart can put every step pod on a node pool and give it a pull secret, a workflow can add
a ConfigMap volume and a step can raise its own memory limit, each without repeating the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from taskforge.api.common import ResourceRequirements
from taskforge.api.pod import Affinity, PodSettings

T = TypeVar("T")


def _maps(values: Iterable[dict[str, T] | None]) -> dict[str, T] | None:
    out: dict[str, T] = {}
    seen = False
    for value in values:
        if value is not None:
            seen = True
            out.update(value)
    return out if seen else None


def _last(values: Iterable[T | None]) -> T | None:
    chosen: T | None = None
    for value in values:
        if value is not None:
            chosen = value
    return chosen


def _keyed(lists: Iterable[Sequence[T] | None], key: Callable[[T], str]) -> list[T] | None:
    out: dict[str, T] = {}
    seen = False
    for items in lists:
        if items is not None:
            seen = True
            for item in items:
                out[key(item)] = item  # a later level replaces the value, keeps the position
    return list(out.values()) if seen else None


def _resources(levels: Sequence[PodSettings]) -> ResourceRequirements | None:
    given = [p.resources for p in levels if p.resources is not None]
    if not given:
        return None
    return ResourceRequirements.model_construct(requests=_maps(r.requests for r in given),
                                limits=_maps(r.limits for r in given))


def _affinity(levels: Sequence[PodSettings]) -> Affinity | None:
    given = [p.affinity for p in levels if p.affinity is not None]
    if not given:
        return None
    return Affinity.model_construct(node_affinity=_last(a.node_affinity for a in given),
                    pod_affinity=_last(a.pod_affinity for a in given),
                    pod_anti_affinity=_last(a.pod_anti_affinity for a in given))


def merge_pod_settings(*levels: PodSettings | None) -> PodSettings | None:
    """The settings of `levels`, least specific first (chart, workflow, step); None if none."""
    given = [p for p in levels if p is not None]
    if not given:
        return None
    if len(given) == 1:
        return given[0]
    tolerations = []
    for p in given:
        for t in p.tolerations or ():
            if t not in tolerations:
                tolerations.append(t)
    # model_construct: every part was validated at its own level (the chart's may use keys a
    # workflow may not), and merging them makes nothing new to check.
    return PodSettings.model_construct(
        service_account_name=_last(p.service_account_name for p in given),
        automount_service_account_token=_last(p.automount_service_account_token for p in given),
        image_pull_secrets=_keyed((p.image_pull_secrets for p in given), lambda r: r.name),
        node_selector=_maps(p.node_selector for p in given),
        tolerations=tolerations or None,
        affinity=_affinity(given),
        priority_class_name=_last(p.priority_class_name for p in given),
        resources=_resources(given),
        labels=_maps(p.labels for p in given),
        annotations=_maps(p.annotations for p in given),
        volumes=_keyed((p.volumes for p in given), lambda v: v.name),
        volume_mounts=_keyed((p.volume_mounts for p in given), lambda m: m.mount_path),
    )


def pod_spec_fields(settings: PodSettings | None) -> dict[str, Any]:
    """The pod-spec fields (wire form) the settings set, for the Job builder: everything but
    resources, labels, annotations, volumes and mounts, which it places itself."""
    if settings is None:
        return {}
    wire = settings.to_k8s()
    keep = ("serviceAccountName", "automountServiceAccountToken", "imagePullSecrets",
            "nodeSelector", "tolerations", "affinity", "priorityClassName")
    return {k: wire[k] for k in keep if k in wire}


def priority_class_for(priority: int, bands: Sequence[tuple[int, str]]) -> str | None:
    """The priorityClassName of the highest band (chart value stepPriorityClasses:
    ``minPriority``, ``className``) whose ``minPriority`` the run's priority reaches; None when
    none does. Why a mapping and not the run's own class name: the admin decides which
    Kubernetes priority classes step pods may get, a run only says how urgent it is."""
    best: tuple[int, str] | None = None
    for floor, name in bands:
        if priority >= floor and (best is None or floor > best[0]):
            best = (floor, name)
    return best[1] if best else None
