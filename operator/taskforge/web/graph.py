"""A layered layout of a run's step graph, drawn by the run page as inline SVG.

Why on the server and by hand: the graph is small in logic (a DAG that the operator already
validated) and large only in size (1,000 steps), so a pure function of the names and edges
is enough and keeps the UI free of a JavaScript graph library, a bundler and a CDN. The
layout is the classic Sugiyama scheme reduced to what a workflow needs:

1. layers: each step's column is the longest dependency path that reaches it (Kahn's
   algorithm, iterative, so a 1,000-step chain cannot hit a recursion limit); `finally`
   steps get a column of their own after the main graph;
2. order within a column: a few barycenter sweeps (down, then up) to cut edge crossings,
   ties kept in spec order so the picture is stable between renders;
3. coordinates on a grid, and each edge a cubic Bezier from the right edge of its source to
   the left edge of its target.

Every input is hostile: edges naming unknown steps are dropped, duplicate names count once,
and steps on a cycle (which the operator rejects, but the page must still draw) go in the
column after the last one rather than looping forever. The work is O((steps + edges) * sweeps).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NODE_W = 168
NODE_H = 40
GAP_X = 56
GAP_Y = 16
MARGIN = 12
SWEEPS = 4


@dataclass(frozen=True)
class Node:
    name: str
    layer: int
    row: int
    x: int
    y: int
    final: bool


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str  # SVG path data


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    node_w: int = NODE_W
    node_h: int = NODE_H


def _layers(names: Sequence[str], preds: dict[str, list[str]],
            succs: dict[str, list[str]]) -> dict[str, int]:
    """Longest-path layering; steps left on a cycle go one column after the deepest."""
    indegree = {n: len(preds[n]) for n in names}
    layer = dict.fromkeys(names, 0)
    ready = deque(n for n in names if indegree[n] == 0)
    done = 0
    while ready:
        name = ready.popleft()
        done += 1
        for nxt in succs[name]:
            layer[nxt] = max(layer[nxt], layer[name] + 1)
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    if done < len(names):
        stuck = max((layer[n] for n in names if indegree[n] == 0), default=-1) + 1
        for n in names:
            if indegree[n] > 0:
                layer[n] = stuck
    return layer


def _order(columns: list[list[str]], preds: dict[str, list[str]],
           succs: dict[str, list[str]]) -> None:
    """Barycenter sweeps in place: each column sorted by the mean row of its neighbours."""
    row = {n: i for col in columns for i, n in enumerate(col)}

    def sweep(cols: Iterable[list[str]], nbrs: dict[str, list[str]]) -> None:
        for col in cols:
            def key(item: tuple[int, str]) -> tuple[float, int]:
                i, n = item
                linked = nbrs[n]
                return (sum(row[m] for m in linked) / len(linked) if linked else float(i), i)
            col[:] = [n for _, n in sorted(enumerate(col), key=key)]
            for i, n in enumerate(col):
                row[n] = i

    for _ in range(SWEEPS // 2):
        sweep(columns[1:], preds)
        sweep(reversed(columns[:-1]), succs)


def layout(steps: Sequence[str], edges: Iterable[Sequence[str]],
           final: Iterable[str] = ()) -> Layout:
    """Place `steps` (in spec order) and route `edges` ([source, target] pairs).

    `final` names the `finally` steps: they get the last column (after any cycle column) and
    keep only the edges between themselves, so they read as "runs after everything".
    """
    names = list(dict.fromkeys(steps))
    known = set(names)
    finals = [n for n in dict.fromkeys(final) if n in known]
    final_set = set(finals)
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    pairs: list[tuple[str, str]] = []
    for edge in edges:
        if len(edge) != 2:
            continue
        src, dst = str(edge[0]), str(edge[1])
        if src not in known or dst not in known or src == dst or (src, dst) in seen:
            continue
        if (src in final_set) != (dst in final_set):
            continue
        seen.add((src, dst))
        pairs.append((src, dst))
        preds[dst].append(src)
        succs[src].append(dst)
    main = [n for n in names if n not in final_set]
    layer = _layers(main, preds, succs)
    if finals:
        base = max(layer.values(), default=-1) + 1
        for n, lvl in _layers(finals, preds, succs).items():
            layer[n] = base + lvl
    columns: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for n in names:
        columns[layer[n]].append(n)
    _order(columns, preds, succs)
    nodes: dict[str, Node] = {}
    for li, col in enumerate(columns):
        for ri, n in enumerate(col):
            nodes[n] = Node(n, li, ri, MARGIN + li * (NODE_W + GAP_X),
                            MARGIN + ri * (NODE_H + GAP_Y), n in final_set)
    routed = []
    for src, dst in pairs:
        a, b = nodes[src], nodes[dst]
        x1, y1 = a.x + NODE_W, a.y + NODE_H // 2
        x2, y2 = b.x, b.y + NODE_H // 2
        bend = max(GAP_X // 2, (x2 - x1) // 3)
        routed.append(Edge(src, dst, f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"))
    tallest = max((len(c) for c in columns), default=0)
    width = 2 * MARGIN + len(columns) * NODE_W + max(len(columns) - 1, 0) * GAP_X
    height = 2 * MARGIN + tallest * NODE_H + max(tallest - 1, 0) * GAP_Y
    return Layout(width, height, tuple(nodes[n] for n in names), tuple(routed))
