"""The endpoints that change something: start a run, cancel it, retry it.

Each is checked twice. First here, by SubjectAccessReview for the caller (a clear 403 that
names the verb, before anything happens), and then by the API server itself, because the
write is made with the caller's own token (cluster mode) or kubeconfig (local mode), never
with this server's ServiceAccount: admission then records the real user as the run's
creator, and the operator gives the run exactly that user's authority (DESIGN.md).

Input is checked before any write, and errors name the field (`params.count`, `workflow`):
a bad request changes nothing.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from taskforge.api.workflow import ParamSpec
from taskforge.engine.params import ParamsError, resolve_params
from taskforge.engine.rerun import RerunError, retry_manifest, run_manifest
from taskforge.web import views
from taskforge.web.auth import ACCESS_KEY, Check, User, require
from taskforge.web.errors import ApiError, json_body
from taskforge.web.reads import get_run, get_workflow
from taskforge.web.state import KUBE_KEY, crd_path, name_arg

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
TERMINAL = ("Succeeded", "Failed", "Cancelled")


def check_params(declared: list[Any], given: Any, workflow: str) -> dict[str, Any]:
    """The given params, checked as the operator will check them; 422 naming the param."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ApiError(422, "params must be a JSON object of param names to values", "params")
    try:
        specs = [ParamSpec.model_validate(p) for p in declared]
    except ValidationError:
        raise ApiError(409, f"workflow {workflow!r} declares invalid params (see its Valid"
                       " condition): fix the Workflow first") from None
    try:
        resolve_params(specs, given)
    except ParamsError as exc:
        where, _, message = str(exc).partition(": ")
        name = where.removeprefix("spec.params.")
        raise ApiError(422, f"param {name!r}: {message}", f"params.{name}") from None
    return dict(given)


async def create_run(request: web.Request, user: User, namespace: str,
                     manifest: dict[str, Any]) -> dict[str, Any]:
    kube, access = request.app[KUBE_KEY], request.app[ACCESS_KEY]
    return await kube.request("POST", crd_path(namespace, "workflowruns"), body=manifest,
                              token=access.write_token(user))


async def start_run(request: web.Request) -> web.Response:
    ns = name_arg(request, "ns")
    user = await require(request, Check("create", "workflowruns", ns))
    body = await json_body(request)
    unknown = sorted(set(body) - {"workflow", "params", "name"})
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r} (expected workflow, params, name)",
                       unknown[0])
    workflow = body.get("workflow")
    if not isinstance(workflow, str) or not _NAME.match(workflow):
        raise ApiError(422, "workflow must be the name of a Workflow in the namespace",
                       "workflow")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not _NAME.match(name)
                             or len(name) > 63):
        raise ApiError(422, "name must be a DNS label of at most 63 characters", "name")
    await require(request, Check("get", "workflows", ns))
    wf = await get_workflow(request.app[KUBE_KEY], ns, workflow)
    declared = [p for p in (wf.get("spec") or {}).get("params") or [] if isinstance(p, dict)]
    params = check_params(declared, body.get("params"), workflow)
    manifest = run_manifest(workflow=workflow, name=name, source={"workflowRef": {
        "name": workflow}}, params=params, trigger="manual")
    created = await create_run(request, user, ns, manifest)
    return web.json_response(views.run_summary(created), status=201)


async def cancel_run(request: web.Request) -> web.Response:
    ns, name = name_arg(request, "ns"), name_arg(request, "name")
    user = await require(request, Check("patch", "workflowruns", ns))
    kube = request.app[KUBE_KEY]
    run = await get_run(kube, ns, name)
    phase = (run.get("status") or {}).get("phase")
    if phase in TERMINAL:
        raise ApiError(409, f"run {name!r} already ended ({phase}): nothing to cancel")
    patched = await kube.request(
        "PATCH", crd_path(ns, "workflowruns", name), body={"spec": {"cancel": True}},
        token=request.app[ACCESS_KEY].write_token(user),
        content_type="application/merge-patch+json")
    return web.json_response(views.run_summary(patched))


async def retry_run(request: web.Request) -> web.Response:
    ns, name = name_arg(request, "ns"), name_arg(request, "name")
    user = await require(request, Check("create", "workflowruns", ns))
    kube = request.app[KUBE_KEY]
    old = await get_run(kube, ns, name)
    spec = views.followed_spec(old)
    if spec is None and (ref := views.run_workflow(old)):
        spec = (await get_workflow(kube, ns, ref)).get("spec")
    try:
        manifest, reused = retry_manifest(old, spec)
    except RerunError as exc:
        raise ApiError(409, str(exc)) from None
    created = await create_run(request, user, ns, manifest)
    return web.json_response({**views.run_summary(created), "reused": reused}, status=201)


def add_routes(app: web.Application) -> None:
    base = "/api/v1/namespaces/{ns}/runs"
    app.router.add_post(base, start_run)
    app.router.add_post(f"{base}/{{name}}/cancel", cancel_run)
    app.router.add_post(f"{base}/{{name}}/retry", retry_run)
