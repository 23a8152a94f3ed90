"""The web API against the real control plane, operator and Redis: every endpoint once
allowed and once denied (RBAC through TokenReview + SubjectAccessReview), and bad input
(unknown run, bad paging, malformed bodies) answered with a clear error that changes
nothing."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.operator.conftest import Kube
from tests.e2e.web.conftest import Api, Users, WebServer, error_of

pytestmark = pytest.mark.local_agent

PIPELINE = {
    "params": [{"name": "count", "type": "integer", "required": True},
               {"name": "who", "type": "string", "default": "web"}],
    "steps": [
        {"name": "hello", "script": {"source": "echo hello from {{ params.who }}; sleep 1"}},
        {"name": "after", "dependsOn": ["hello"], "log": {"message": "n={{ params.count }}"}},
    ],
}


def _runs(kube: Kube) -> set[str]:
    listed = kube.custom.list_namespaced_custom_object(
        "taskforge.io", "v1alpha1", kube.namespace, "workflowruns")
    return {r["metadata"]["name"] for r in listed["items"]}


def test_identity_login_and_csrf(web: WebServer, users: Users) -> None:
    anonymous = Api(web, None, users.namespace)
    assert error_of(anonymous("GET", "/api/v1/whoami"))["reason"] == "Unauthorized"
    assert anonymous("GET", "/api/v1/whoami",
                     headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    me = Api(web, users.viewer, users.namespace)("GET", "/api/v1/whoami").json()
    assert me["user"]["name"] == f"system:serviceaccount:{users.namespace}:viewer"
    assert me["mode"] == "cluster"
    # through the API server's service proxy the token comes in X-Taskforge-Token
    proxied = anonymous("GET", "/api/v1/whoami", headers={"X-Taskforge-Token": users.viewer})
    assert proxied.json()["user"]["name"].endswith(":viewer")

    browser = httpx.Client(base_url=web.url, timeout=30)
    assert browser.post("/api/v1/login", json={"token": "nope"}).status_code == 401
    assert error_of(browser.post("/api/v1/login", content=b"{"))["reason"] == "BadRequest"
    logged = browser.post("/api/v1/login", json={"token": users.editor})
    assert logged.status_code == 200 and "taskforge_token" in logged.headers["set-cookie"]
    assert "HttpOnly" in logged.headers["set-cookie"]
    assert browser.get("/api/v1/whoami").json()["user"]["name"].endswith(":editor")
    # a cookie alone cannot change anything (a cross-site form could send it)
    forged = browser.post(f"/api/v1/namespaces/{users.namespace}/runs", json={})
    assert forged.status_code == 403 and "X-Taskforge-Request" in error_of(forged)["message"]
    browser.post("/api/v1/logout", headers={"X-Taskforge-Request": "1"})
    assert browser.get("/api/v1/whoami").status_code == 401


def test_permissions_answer_per_user(web: WebServer, users: Users) -> None:
    view = Api(web, users.viewer, users.namespace)("GET", "permissions").json()
    edit = Api(web, users.editor, users.namespace)("GET", "permissions").json()
    none = Api(web, users.nobody, users.namespace)("GET", "permissions").json()
    assert view["runs"] == {"list": True, "get": True, "create": False, "cancel": False,
                            "retry": False}
    assert view["deadletters"] == {"list": True, "replay": False, "purge": False}
    assert edit["runs"]["create"] and edit["runs"]["cancel"] and edit["deadletters"]["purge"]
    assert not any(v for area in none.values() for v in area.values())


def test_reads_allowed_and_denied(web: WebServer, users: Users, kube: Kube) -> None:
    kube.workflow("pipeline", PIPELINE)
    run = kube.start_run("pipeline", {"count": 2})
    done = kube.wait_run(run)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    viewer, nobody = Api(web, users.viewer, users.namespace), Api(web, users.nobody,
                                                                  users.namespace)
    paths = ["workflows", "workflows/pipeline", "runs", f"runs/{run}", f"runs/{run}/events",
             f"runs/{run}/steps/hello/logs", "deadletters"]
    for path in paths:
        denied = nobody("GET", path)
        assert denied.status_code == 403, (path, denied.text)
        assert "may not" in error_of(denied)["message"]
        allowed = viewer("GET", path)
        assert allowed.status_code == 200, (path, allowed.text)

    workflows = viewer("GET", "workflows").json()["items"]
    assert [(w["name"], w["steps"], w["lastRun"]["name"]) for w in workflows] == [
        ("pipeline", 2, run)]
    assert workflows[0]["params"][0]["name"] == "count"
    detail = viewer("GET", f"runs/{run}").json()
    assert [s["name"] for s in detail["steps"]] == ["hello", "after"]
    assert [s["phase"] for s in detail["steps"]] == ["Succeeded", "Succeeded"]
    assert detail["edges"] == [["hello", "after"]] and detail["summary"]["phase"] == "Succeeded"
    assert detail["steps"][0]["type"] == "script" and detail["steps"][0]["attempts"] == 1
    logs = viewer("GET", f"runs/{run}/steps/hello/logs")
    assert logs.headers["content-type"].startswith("text/plain")
    assert "hello from web" in logs.text
    reasons = {e["reason"] for e in viewer("GET", f"runs/{run}/events").json()["items"]}
    assert reasons, "the run has Events"


def test_start_cancel_retry_allowed_and_denied(web: WebServer, users: Users,
                                               kube: Kube) -> None:
    kube.workflow("pipeline", {**PIPELINE, "steps": [
        {"name": "wait", "script": {"source": "sleep 30"}}]})
    viewer, editor = Api(web, users.viewer, users.namespace), Api(web, users.editor,
                                                                  users.namespace)
    before = _runs(kube)
    denied = viewer("POST", "runs", json={"workflow": "pipeline", "params": {"count": 1}})
    assert denied.status_code == 403 and "create workflowruns" in error_of(denied)["message"]
    for body, field in (
        ({"workflow": "pipeline"}, "params.count"),  # required, missing
        ({"workflow": "pipeline", "params": {"count": "x"}}, "params.count"),
        ({"workflow": "pipeline", "params": {"count": 1, "typo": 2}}, "params.typo"),
        ({"workflow": "pipeline", "params": [1]}, "params"),
        ({"workflow": "Bad_Name"}, "workflow"),
        ({"workflow": "pipeline", "params": {"count": 1}, "extra": 1}, "extra"),
    ):
        bad = editor("POST", "runs", json=body)
        assert bad.status_code == 422, (body, bad.text)
        assert error_of(bad)["field"] == field, bad.json()
    assert "count" in error_of(editor("POST", "runs", json={"workflow": "pipeline"}))["message"]
    missing = editor("POST", "runs", json={"workflow": "nope", "params": {}})
    assert missing.status_code == 404 and "nope" in error_of(missing)["message"]
    for raw in (b"{", b"[1]", b'"x"'):
        assert editor("POST", "runs", content=raw).status_code == 400
    assert _runs(kube) == before, "nothing was created by refused requests"

    started = editor("POST", "runs", json={"workflow": "pipeline", "params": {"count": 3}})
    assert started.status_code == 201, started.text
    name = started.json()["name"]
    created = kube.run(name)
    assert created["spec"]["params"] == {"count": 3}
    assert created["spec"]["trigger"] == {"type": "manual"}
    kube.wait_run(name, lambda r: (r.get("status") or {}).get("phase") == "Running", 30)
    # written with the editor's own token: admission recorded the editor as the creator
    creator = (created["metadata"].get("annotations") or {}).get("taskforge.io/creator", "")
    assert f"system:serviceaccount:{users.namespace}:editor" in creator, creator

    assert viewer("POST", f"runs/{name}/cancel").status_code == 403
    assert not kube.run(name)["spec"].get("cancel")
    assert viewer("POST", f"runs/{name}/retry").status_code == 403
    early = editor("POST", f"runs/{name}/retry")
    assert early.status_code == 409 and "cancel" in error_of(early)["message"]
    cancelled = editor("POST", f"runs/{name}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["cancelRequested"]
    assert kube.wait_run(name, timeout=30)["status"]["phase"] == "Cancelled"
    assert editor("POST", f"runs/{name}/cancel").status_code == 409
    retried = editor("POST", f"runs/{name}/retry")
    assert retried.status_code == 201, retried.text
    new = kube.run(retried.json()["name"])
    assert new["spec"]["trigger"] == {"type": "retry"} and new["spec"]["params"] == {"count": 3}
    editor("POST", f"runs/{retried.json()['name']}/cancel")


def test_bad_input_is_a_clear_error(web: WebServer, users: Users, kube: Kube) -> None:
    viewer = Api(web, users.viewer, users.namespace)
    editor = Api(web, users.editor, users.namespace)
    unknown = viewer("GET", "runs/no-such-run")
    assert unknown.status_code == 404 and "no-such-run" in error_of(unknown)["message"]
    for path in ("runs/no-such-run/events", "runs/no-such-run/steps/x/logs"):
        assert viewer("GET", path).status_code == 404
    assert editor("POST", "runs/no-such-run/cancel").status_code == 404
    assert editor("POST", "runs/no-such-run/retry").status_code == 404
    for query, field in (({"limit": "0"}, "limit"), ({"limit": "abc"}, "limit"),
                         ({"limit": "501"}, "limit"), ({"continue": "garbage"}, "continue"),
                         ({"phase": "Bogus"}, "phase"), ({"since": "yesterday"}, "since"),
                         ({"until": "2026-01-01T00:00:00"}, "until")):
        bad = viewer("GET", "runs", params=query)
        assert bad.status_code == 400, (query, bad.text)
        assert error_of(bad)["field"] == field
    assert error_of(viewer("GET", "/api/v1/namespaces/Not_A_NS/runs"))["field"] == "ns"
    assert viewer("GET", "/api/v1/nothing-here").status_code == 404


def test_paging_and_filters(web: WebServer, users: Users, kube: Kube) -> None:
    kube.workflow("quick", {"steps": [{"name": "s", "log": {"message": "x"}}]})
    kube.workflow("other", {"steps": [{"name": "s", "log": {"message": "y"}}]})
    names = {kube.start_run("quick") for _ in range(5)} | {kube.start_run("other")}
    viewer = Api(web, users.viewer, users.namespace)
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = viewer("GET", "runs", params={"limit": "2", **(
            {"continue": token} if token else {})}).json()
        pages += 1
        seen += [r["name"] for r in page["items"]]
        assert len(page["items"]) <= 2
        token = page["continue"]
        if not token:
            break
    assert pages == 3 and set(seen) == names and len(seen) == 6
    first = viewer("GET", "runs", params={"limit": "2"}).json()
    other_filters = viewer("GET", "runs", params={"limit": "2", "workflow": "quick",
                                                  "continue": first["continue"]})
    assert other_filters.status_code == 400
    assert "other filters" in error_of(other_filters)["message"]
    quick = viewer("GET", "runs", params={"workflow": "quick"}).json()["items"]
    assert len(quick) == 5 and {r["workflow"] for r in quick} == {"quick"}
    future = viewer("GET", "runs", params={"since": "2099-01-01T00:00:00Z"}).json()
    assert future["items"] == []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = viewer("GET", "runs", params={"phase": "Succeeded"}).json()["items"]
        if len(done) == 6:
            break
        time.sleep(0.3)
    assert len(done) == 6
