"""Table tests of the run page's DAG layout (taskforge.web.graph): pure, no mocks."""

from __future__ import annotations

import time

import pytest
from taskforge.web.graph import GAP_X, MARGIN, NODE_H, NODE_W, layout


def columns(steps: list[str], edges: list[list[str]], final: tuple[str, ...] = ()
            ) -> list[list[str]]:
    """The layout as columns of names, top to bottom."""
    placed = layout(steps, edges, final)
    out: list[list[str]] = [[] for _ in range(1 + max((n.layer for n in placed.nodes),
                                                       default=-1))]
    for node in sorted(placed.nodes, key=lambda n: (n.layer, n.row)):
        out[node.layer].append(node.name)
    return out


@pytest.mark.parametrize(("steps", "edges", "final", "expected"), [
    ([], [], (), []),
    (["a"], [], (), [["a"]]),
    (["a", "b", "c"], [["a", "b"], ["b", "c"]], (), [["a"], ["b"], ["c"]]),
    # independent steps share the first column, in spec order
    (["a", "b", "c"], [], (), [["a", "b", "c"]]),
    # a diamond: the join waits for the longest path
    (["a", "b", "c", "d"], [["a", "b"], ["a", "c"], ["b", "d"], ["c", "d"]], (),
     [["a"], ["b", "c"], ["d"]]),
    # longest path, not shortest: d depends on a directly and through b -> c
    (["a", "b", "c", "d"], [["a", "b"], ["b", "c"], ["c", "d"], ["a", "d"]], (),
     [["a"], ["b"], ["c"], ["d"]]),
    # finally steps get their own column(s) after the main graph
    (["a", "b", "f"], [["a", "b"]], ("f",), [["a"], ["b"], ["f"]]),
    (["a", "f", "g"], [["f", "g"]], ("f", "g"), [["a"], ["f"], ["g"]]),
    # hostile input: unknown names, self-loops, duplicates and odd pairs are dropped
    (["a", "b"], [["a", "zz"], ["a", "a"], ["a", "b"], ["a", "b"], ["x"], ["a", "b", "c"]], (),
     [["a"], ["b"]]),
    (["a", "a", "b"], [], (), [["a", "b"]]),
    # a cycle (which the operator rejects) is drawn in the column after the rest, not looped
    (["a", "b", "c"], [["b", "c"], ["c", "b"]], (), [["a"], ["b", "c"]]),
    (["a", "b", "c", "d"], [["a", "b"], ["c", "d"], ["d", "c"]], (), [["a"], ["b"], ["c", "d"]]),
])
def test_columns(steps: list[str], edges: list[list[str]], final: tuple[str, ...],
                 expected: list[list[str]]) -> None:
    assert columns(steps, edges, final) == expected


@pytest.mark.parametrize(("steps", "edges", "expected"), [
    # crossing reduction: x feeds the bottom of the next column, so it moves down there too
    (["p", "q", "x", "y"], [["p", "y"], ["q", "x"]], [["p", "q"], ["y", "x"]]),
    (["r1", "r2", "c1", "c2"], [["r2", "c1"], ["r1", "c2"]], [["r1", "r2"], ["c2", "c1"]]),
])
def test_barycenter_order(steps: list[str], edges: list[list[str]],
                          expected: list[list[str]]) -> None:
    assert columns(steps, edges) == expected


def test_geometry() -> None:
    placed = layout(["a", "b", "c"], [["a", "b"], ["a", "c"]])
    by = {n.name: n for n in placed.nodes}
    assert (by["a"].x, by["a"].y) == (MARGIN, MARGIN)
    assert by["b"].x == MARGIN + NODE_W + GAP_X
    assert by["c"].y == by["b"].y + NODE_H + 16
    assert placed.width == 2 * MARGIN + 2 * NODE_W + GAP_X
    assert placed.height == 2 * MARGIN + 2 * NODE_H + 16
    ab = next(e for e in placed.edges if e.target == "b")
    assert ab.path.startswith(f"M{MARGIN + NODE_W},{MARGIN + NODE_H // 2} C")
    assert ab.path.endswith(f" {by['b'].x},{by['b'].y + NODE_H // 2}")
    assert [n.name for n in placed.nodes] == ["a", "b", "c"]  # spec order, for the page


@pytest.mark.parametrize("shape", ["chain", "fan", "grid"])
def test_thousand_steps_fast(shape: str) -> None:
    names = [f"s{i}" for i in range(1000)]
    if shape == "chain":
        edges = [[names[i], names[i + 1]] for i in range(999)]
    elif shape == "fan":
        edges = [["s0", n] for n in names[1:]]
    else:  # 10 columns of 100, each step depending on two of the previous column
        edges = [[names[i - 100], names[i]] for i in range(100, 1000)]
        edges += [[names[i - 99], names[i]] for i in range(100, 999)]
    # CPU time, not wall: under two CPU burners the wall time of this 25 ms of work reached
    # 0.58 s (issue 20's load runs); the CPU it costs is what the bound is about.
    start = time.process_time()
    placed = layout(names, edges)
    took = time.process_time() - start
    assert len(placed.nodes) == 1000
    assert len({(n.x, n.y) for n in placed.nodes}) == 1000  # no two nodes on one spot
    assert took < 0.5, f"layout of 1,000 steps took {took:.3f}s of CPU"
