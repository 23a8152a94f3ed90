"""The step graph: validation (unknown references, cycles) and a deterministic order.

Modelled on Tekton's `dag.Build`: built once per reconcile in O(steps + edges), iteratively
(a 1,000-step chain must not hit Python's recursion limit). Main steps and finally steps
share one graph; a finally step may depend on main steps and on other finally steps, a main
step only on main steps.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections import deque
from collections.abc import Container
from dataclasses import dataclass

from taskforge.api.steps import Step
from taskforge.api.workflow import WorkflowSpec


class DagError(ValueError):
    """The workflow's steps do not form a valid DAG; the message names the field."""


@dataclass(frozen=True)
class Dag:
    """Steps by name, their dependencies without duplicates, and a topological order.

    `order` lists main steps first, then finally steps, each part in topological order with
    ties broken by position in the spec, so every plan visits steps in the same order.
    """

    steps: dict[str, Step]
    deps: dict[str, tuple[str, ...]]
    main: tuple[str, ...]
    final: tuple[str, ...]
    order: tuple[str, ...]
    final_set: frozenset[str]
    tolerant: frozenset[str] = frozenset()
    """Steps with continueOnFailure: their failure neither skips dependents nor fails the run."""
    fanout: frozenset[str] = frozenset()
    """Steps with forEach (engine/fanout.py)."""
    approvals: frozenset[str] = frozenset()
    """Approval steps (engine/approval.py)."""

    def is_final(self, name: str) -> bool:
        return name in self.final_set


def _index(
    group: list[Step], field: str, steps: dict[str, Step], deps: dict[str, tuple[str, ...]]
) -> list[str]:
    """Add a group's steps to `steps`/`deps`, rejecting duplicate names; returns its names."""
    names = []
    for i, step in enumerate(group):
        name = step.name
        if name in steps:
            raise DagError(f"{field}[{i}].name: step name {name!r} is used twice")
        steps[name] = step
        raw = step.depends_on
        deps[name] = () if not raw else tuple(dict.fromkeys(raw))
        names.append(name)
    return names


def _check_refs(group: list[Step], known: Container[str], field: str) -> None:
    for i, step in enumerate(group):
        for j, dep in enumerate(step.depends_on or ()):
            if dep not in known:
                raise DagError(
                    f"{field}[{i}].dependsOn[{j}]: step {step.name!r} depends on unknown"
                    f" step {dep!r}"
                )


def _toposort(names: list[str], deps: dict[str, tuple[str, ...]], field: str) -> list[str]:
    """Kahn's algorithm over `names`; deps outside `names` are treated as already done.

    Plain loops and dict lookups only: this runs on every reconcile of a 1,000-step run.
    """
    indegree = dict.fromkeys(names, 0)
    dependents: dict[str, list[str]] = {n: [] for n in names}
    for n in names:
        for d in deps[n]:
            if d in indegree:
                indegree[n] += 1
                dependents[d].append(n)
    queue = deque([n for n in names if not indegree[n]])
    order: list[str] = []
    append, pop = order.append, queue.popleft
    while queue:
        n = pop()
        append(n)
        for m in dependents[n]:
            left = indegree[m] - 1
            indegree[m] = left
            if not left:
                queue.append(m)
    if len(order) < len(names):
        raise DagError(f"{field}: dependency cycle: {_find_cycle(names, deps, indegree)}")
    return order


def _find_cycle(
    names: list[str], deps: dict[str, tuple[str, ...]], indegree: dict[str, int]
) -> str:
    """Walk 'depends on' edges among the steps Kahn could not order until one repeats.

    Every such step has a dependency that is also unordered, so the walk never stops early
    and finds a cycle in O(steps); the result reads like `a -> b -> a`.
    """
    left = {n for n in names if indegree[n] > 0}
    start = next(n for n in names if n in left)
    path: list[str] = []
    seen: dict[str, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(d for d in deps[node] if d in left)
    cycle = [*path[seen[node] :], node]
    return " -> ".join(cycle)


def build(spec: WorkflowSpec) -> Dag:
    """Validate the graph and order it; raises DagError naming the offending field."""
    main_steps = list(spec.steps)
    final_steps = list(spec.finally_steps or ())
    steps: dict[str, Step] = {}
    deps: dict[str, tuple[str, ...]] = {}
    main_names = _index(main_steps, "spec.steps", steps, deps)
    _check_refs(main_steps, steps, "spec.steps")  # only main steps are indexed so far
    final_names = _index(final_steps, "spec.finally", steps, deps)
    _check_refs(final_steps, steps, "spec.finally")
    main_order = _toposort(main_names, deps, "spec.steps")
    final_order = _toposort(final_names, deps, "spec.finally") if final_names else []
    return Dag(
        steps=steps,
        deps=deps,
        main=tuple(main_order),
        final=tuple(final_order),
        order=(*main_order, *final_order),
        final_set=frozenset(final_names),
        tolerant=frozenset(n for n, s in steps.items() if s.continue_on_failure),
        fanout=frozenset(n for n, s in steps.items() if s.for_each is not None),
        approvals=frozenset(n for n, s in steps.items() if s.approval is not None),
    )


_CACHE: dict[int, tuple[weakref.ref[WorkflowSpec], Dag]] = {}
_CACHE_SIZE = 256
# plan() also runs in the operator's planning threads (templates that need a worker), so the
# memo is shared between threads: the eviction below must not race another thread's.
_LOCK = threading.Lock()


def build_cached(spec: WorkflowSpec) -> Dag:
    """`build`, memoised on the identity of a (frozen) spec.

    A pure memo: the same spec object always gives the same Dag, so results do not depend on
    the cache. It pays off when the adapter hands the engine the same parsed pinned spec on
    every reconcile (the pinned spec never changes, so it can be cached per run UID), and
    keeps a 1,000-step reconcile from re-sorting the graph each time.
    """
    key = id(spec)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is spec:
        return hit[1]
    dag = build(spec)
    with _LOCK:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)), None)
        _CACHE[key] = (weakref.ref(spec, functools.partial(_drop, key)), dag)
    return dag


def _drop(key: int, ref: weakref.ref[WorkflowSpec]) -> None:
    """Forget a spec that was garbage-collected (its id may be reused by a new object)."""
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is ref:
        _CACHE.pop(key, None)
