"""The UI's templates and assets (taskforge.web.pages): rendered from plain values, no cluster.

The browser tests (tests/e2e/browser) drive the same pages against the real API; these pin
what must hold for any input: names are escaped, the graph is one node per step, the shells
load only their own assets, and the assets are where the wheel ships them.
"""

from __future__ import annotations

import asyncio
import json
import re
from html.parser import HTMLParser

import pytest
from aiohttp import ClientPayloadError, web
from aiohttp.test_utils import make_mocked_request
from markupsafe import Markup
from taskforge.web import pages
from taskforge.web.auth import ACCESS_KEY, User
from taskforge.web.errors import ApiError
from taskforge.web.kubeapi import KubeError
from taskforge.web.state import KUBE_KEY

USER = {"name": "alice"}


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse(html: str) -> list[tuple[str, dict[str, str | None]]]:
    collector = Collect()
    collector.feed(html)
    return collector.tags


@pytest.mark.parametrize(("template", "context"), [
    ("workflows.html", {"page": "workflows"}),
    ("workflow.html", {"page": "workflow", "workflow": "hello"}),
    ("runs.html", {"page": "runs", "workflow": None, "phases": pages.PHASES,
                   "selected": {"Failed"}}),
    ("run.html", {"page": "run", "run": "hello-1"}),
    ("deadletters.html", {"page": "deadletters"}),
    ("login.html", {"page": "login", "next": "/", "ns": None, "user": None}),
])
def test_shells_load_only_their_own_assets(template: str, context: dict[str, object]) -> None:
    values: dict[str, object] = {"mode": "cluster", "user": USER, "ns": "team-a", **context}
    tags = parse(pages.render(template, **values))
    scripts = [a.get("src") for t, a in tags if t == "script"]
    assert len(scripts) == 1
    assert re.fullmatch(r"/static/app\.js\?v=[0-9a-f]{12}", scripts[0] or "")
    assert next(a.get("href") or "" for t, a in tags if t == "link").startswith("/static/app.css")
    assert all(not (a.get("src") or "").startswith("http") for _, a in tags)
    assert not any(a.get("style") for _, a in tags)  # the CSP allows no inline style
    body = next(a for t, a in tags if t == "body")
    assert body["data-page"] == context["page"]


def test_action_buttons_start_hidden_and_name_their_permission() -> None:
    tags = parse(pages.render("run.html", page="run", mode="cluster", user=USER, ns="a",
                              run="r"))
    buttons = {a["id"]: a for t, a in tags if t == "button" and a.get("id", "").startswith("btn")}
    assert set(buttons) == {"btn-cancel", "btn-retry"}
    assert {b["data-needs"] for b in buttons.values()} == {"runs.cancel", "runs.retry"}
    assert all("hidden" in b for b in buttons.values())


def test_phase_filter_checks_the_selected_phases() -> None:
    tags = parse(pages.render("runs.html", page="runs", mode="cluster", user=USER, ns="a",
                              workflow="wf", phases=pages.PHASES,
                              selected={"Failed", "Running"}))
    boxes = {a["value"]: "checked" in a for t, a in tags if a.get("name") == "phase"}
    assert boxes == {"Pending": False, "Running": True, "Succeeded": False, "Failed": True,
                     "Cancelled": False}


def test_hostile_names_are_escaped() -> None:
    evil = '"><script>alert(1)</script>'
    html = pages.render("run.html", page="run", mode="cluster", user={"name": evil}, ns="a",
                        run=evil)
    assert "<script>alert" not in html
    svg = pages.render_graph([evil, "b"], [[evil, "b"]], [])
    assert "<script>" not in svg
    assert [a.get("data-step") for t, a in parse(svg) if t == "a"] == [evil, "b"]


@pytest.mark.parametrize(("steps", "edges", "final", "counts"), [
    ([], [], [], (0, 0, 0)),
    (["a", "b", "c"], [["a", "b"], ["b", "c"]], [], (3, 2, 0)),
    (["a", "b", "f"], [["a", "b"]], ["f"], (3, 1, 1)),
])
def test_graph_svg(steps: list[str], edges: list[list[str]], final: list[str],
                   counts: tuple[int, int, int]) -> None:
    nodes, paths, finals = counts
    tags = parse(pages.render_graph(steps, edges, final))
    anchors = [a for t, a in tags if t == "a"]
    assert len(anchors) == nodes
    assert all("phase-Pending" in (a.get("class") or "") for a in anchors)
    assert sum("final" in (a.get("class") or "").split() for a in anchors) == finals
    assert len([a for t, a in tags if t == "path" and a.get("marker-end")]) == paths
    assert [a.get("href") for a in anchors] == [f"#step-{s}" for s in steps]


def test_assets_are_package_data() -> None:
    assert (pages.STATIC / "app.js").is_file() and (pages.STATIC / "app.css").is_file()
    names = {p.name for p in (pages.UI / "templates").iterdir()}
    assert {"base.html", "run.html", "runs.html"} <= names


@pytest.mark.parametrize(("body", "field"), [
    ({"steps": "a"}, "steps"),
    ({"steps": ["a", 3]}, "steps[1]"),
    ({"steps": [""]}, "steps[0]"),
    ({"steps": ["x" * 254]}, "steps[0]"),
    ({"steps": ["a"] * (pages.MAX_GRAPH_STEPS + 1)}, "steps"),
    ({"finally": [None]}, "finally[0]"),
    ({"edges": {"a": "b"}}, "edges"),
    ({"edges": [["a", "b"], ["a"]]}, "edges[1]"),
    ({"edges": [["a", 1]]}, "edges[0]"),
    ({"edges": [["a", "b"]] * (pages.MAX_GRAPH_EDGES + 1)}, "edges"),
])
def test_graph_request_names_the_bad_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ApiError) as caught:
        pages.graph_request(body)
    assert (caught.value.status, caught.value.field) == (400, field)
    assert field.split("[", maxsplit=1)[0] in caught.value.message


def test_graph_request_canonical() -> None:
    assert pages.graph_request({"steps": ["a", "b"], "edges": [["a", "b"]]}) == (
        '{"steps":["a","b"],"edges":[["a","b"]],"finally":[]}')


def test_run_page_carries_its_first_state_safely() -> None:
    """The run page's state travels as JSON inside the HTML: no value can end the element,
    and the page still loads one script only (the JSON is data, never run)."""
    evil = "</script><script>alert(1)</script><!--"
    state = {"summary": {"name": evil}, "steps": [{"name": "a", "message": evil}]}
    html = pages.render("run.html", page="run", mode="cluster", user=USER, ns="a", run="r",
                        initial=pages._script_json(state),
                        graph=Markup(pages.render_graph(["a"], [], [], {"a": "Running"})))
    tags = parse(html)
    scripts = [a for t, a in tags if t == "script"]
    assert [a.get("type") for a in scripts] == [None, "application/json"]
    assert "<script>alert" not in html and "<!--" not in html
    text = html.split('id="run-initial">', 1)[1].split("</script>", 1)[0]
    assert json.loads(text) == state
    node = next(a for t, a in tags if t == "a" and a.get("data-step") == "a")
    assert node["data-phase"] == "Running" and "phase-Running" in (node.get("class") or "")


@pytest.mark.parametrize(("given", "drawn"), [
    ("Succeeded", "Succeeded"), ("x y", "Pending"), ('"><script>', "Pending"), ("", "Pending")])
def test_graph_phases_become_class_names_only_when_plain(given: str, drawn: str) -> None:
    svg = pages.render_graph(["a", "b"], [["a", "b"]], [], {"a": given})
    nodes = {a["data-step"]: a for t, a in parse(svg) if t == "a"}
    assert nodes["a"]["data-phase"] == drawn and f"phase-{drawn}" in (nodes["a"]["class"] or "")
    assert nodes["b"]["data-phase"] == "Pending"  # not in the map: Pending
    assert "<script>" not in svg


def test_a_big_graph_is_few_elements() -> None:
    """Over MAX_ARROWS edges, all edges are one path (one element to parse instead of one per
    edge, drawn the same: no arrowheads there anyway); a node has a tooltip element only
    where its label cuts the name."""
    steps = [f"s{i}" for i in range(400)] + ["a-name-longer-than-the-label"]
    edges = [[f"s{i}", f"s{i + 1}"] for i in range(399)]
    tags = parse(pages.render_graph(steps, edges, []))
    paths = [a for t, a in tags if t == "path" and "marker-end" not in a and a.get("d")]
    paths = [a for a in paths if a.get("class") != "arrowhead"]
    assert len(paths) == 1 and (paths[0]["d"] or "").count("M") == len(edges)
    titles = [t for t, _ in tags if t == "title"]
    assert titles == ["title"]  # only the long name's
    small = parse(pages.render_graph(["a", "b"], [["a", "b"]], []))
    assert [a.get("marker-end") for t, a in small if t == "path" and "class" not in a] == [
        "url(#arrow)"]


class _Kube:
    def __init__(self, error: Exception | None, run: dict[str, object] | None = None) -> None:
        self.error, self.run, self.calls = error, run, 0

    async def request(self, method: str, path: str, **kw: object) -> dict[str, object]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.run or {}


class _Access:
    def __init__(self, allowed: bool) -> None:
        self.allowed_ = allowed

    async def allowed(self, user: object, check: object) -> bool:
        return self.allowed_


@pytest.mark.parametrize(("allowed", "error", "reads"), [
    (False, None, 0),  # no `get workflowruns` here: the bare shell, nothing read
    (True, ClientPayloadError("cut short"), 1),  # the read failed: the bare shell
    (True, KubeError(404, "NotFound", "gone"), 1),
])
def test_the_run_pages_state_is_left_out_when_it_cannot_be_read(
        allowed: bool, error: Exception | None, reads: int) -> None:
    kube = _Kube(error)
    app = web.Application()
    app[ACCESS_KEY] = _Access(allowed)  # type: ignore[assignment]
    app[KUBE_KEY] = kube  # type: ignore[assignment]
    request = make_mocked_request("GET", "/namespaces/a/runs/r", app=app)
    state = asyncio.run(pages._first_state(request, User("alice"), "a", "r"))
    assert state is None and kube.calls == reads


def test_the_run_pages_state_when_it_can() -> None:
    run = {"metadata": {"name": "r", "namespace": "a", "uid": "u", "resourceVersion": "7"},
           "spec": {}, "status": {"phase": "Running", "workflowSpec": {"steps": [
               {"name": "x", "log": {"message": "m"}}]}, "steps": {"x": {"phase": "Running"}}}}
    app = web.Application()
    app[ACCESS_KEY] = _Access(True)  # type: ignore[assignment]
    app[KUBE_KEY] = _Kube(None, run)  # type: ignore[assignment]
    request = make_mocked_request("GET", "/namespaces/a/runs/r", app=app)
    state = asyncio.run(pages._first_state(request, User("alice"), "a", "r"))
    assert state is not None
    assert json.loads(str(state["initial"]))["summary"]["resourceVersion"] == "7"
    assert 'data-step="x" data-phase="Running"' in str(state["graph"])
