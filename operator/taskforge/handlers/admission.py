"""The admission webhooks: record who created each run and who last wrote each Workflow
(mutating), and reject at apply what the CRD schema cannot check (validating).

kopf serves it (`@kopf.on.mutate`); the API server calls it before storing the object, with
the authenticated user in `userInfo`. That user is the only trustworthy answer to "whose
rights does this run use" (`engine/authority.py`): nothing in the object itself can say it,
since its author writes every field. So the webhook overwrites the annotation on every
create, and puts the old value back on every update, whatever the request carried.

Failure policy `Fail`: a run created while no webhook answered would carry no record, or a
forged one. The API server therefore refuses runs while the webhook is down; run the chart's
two replicas to avoid that. Status writes (the `/status` subresource) are not intercepted.

Three modes (TASKFORGE_ADMISSION):
  * `service` (the Helm chart): the chart creates the MutatingWebhookConfiguration, pointing
    at the operator's Service, and mounts the TLS certificate whose CA it put in it.
  * `local` (an operator running outside the cluster, e.g. tests and the demo): a
    self-signed certificate for 127.0.0.1, and kopf manages the configuration itself.
  * `off`: no webhook. Runs carry no creator, so those that name a Secret or ConfigMap
    fail with `Forbidden`.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import kopf
from pydantic import ValidationError

from taskforge import GROUP, VERSION
from taskforge.adapters import authz
from taskforge.api.steps import Step
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.approval import stamp_approvals
from taskforge.engine.authority import (
    CREATOR_ANNOTATION,
    LAST_WRITER_ANNOTATION,
    identity_from_userinfo,
)
from taskforge.engine.dag import DagError, build
from taskforge.engine.sizes import spec_size_problem
from taskforge.engine.subflow import CHAIN_ANNOTATION
from taskforge.engine.validation import validate_workflow
from taskforge.handlers.admission_server import AdmissionServer
from taskforge.handlers.config import OperatorConfig

log = logging.getLogger("taskforge.admission")
MANAGED_CONFIGURATION = "taskforge.io"
"""Name of the webhook configuration kopf manages in `local` mode."""
RUN_HOOK_ID = "record-run-creator"
WORKFLOW_HOOK_ID = "record-workflow-writer"
VALIDATE_WORKFLOW_ID = "validate-workflow"
VALIDATE_RUN_ID = "validate-run"
MAX_MESSAGE = 4096


def _annotations(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    return dict((body.get("metadata") or {}).get("annotations") or {})


def _set(patch: kopf.Patch, body: Any, name: str, value: str | None) -> None:
    if _annotations(body).get(name) != value:
        patch.setdefault("metadata", {}).setdefault("annotations", {})[name] = value


# persistent=True: kopf would empty the configuration it manages (local mode) whenever one
# replica stops, though others still serve it; remove_managed_configuration() decides instead.
@kopf.on.mutate(GROUP, VERSION, "workflowruns", id=RUN_HOOK_ID, operations=["CREATE", "UPDATE"],
                persistent=True)
def record_run_creator(
    userinfo: kopf.UserInfo, body: kopf.Body, patch: kopf.Patch, **kwargs: Any
) -> None:
    """The creator, set at CREATE; an UPDATE can neither change nor remove it."""
    old = kwargs.get("old")
    if kwargs.get("operation") == "CREATE":
        identity = identity_from_userinfo(userinfo)
        value = identity.to_annotation() if identity else None
    else:
        value = _annotations(old).get(CREATOR_ANNOTATION)
    _set(patch, body, CREATOR_ANNOTATION, value)
    if kwargs.get("operation") != "CREATE":
        # A child run's call chain counts its depth (engine/subflow.py): fixed at creation.
        _set(patch, body, CHAIN_ANNOTATION, _annotations(old).get(CHAIN_ANNOTATION))
    # Who approved an approval step: the authenticated user, never what the client says.
    old_approvals = ((old or {}).get("spec") or {}).get("approvals")
    stamped = stamp_approvals(old_approvals, (body.get("spec") or {}).get("approvals"),
                              (userinfo or {}).get("username"))
    if stamped is not None:
        patch.setdefault("spec", {})["approvals"] = stamped


@kopf.on.mutate(GROUP, VERSION, "workflows", id=WORKFLOW_HOOK_ID, operations=["CREATE", "UPDATE"],
                persistent=True)
def record_workflow_writer(
    userinfo: kopf.UserInfo, body: kopf.Body, patch: kopf.Patch, **_: Any
) -> None:
    """Whoever writes a Workflow last answers for the runs its triggers create."""
    identity = identity_from_userinfo(userinfo)
    _set(patch, body, LAST_WRITER_ANNOTATION, identity.to_annotation() if identity else None)


def _pydantic_problem(error: Any) -> str:
    """`spec.steps.1.name: ...` as `spec.steps[1].name: ...`, without pydantic's prefix."""
    path = "spec"
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return f"{path}: {str(error['msg']).removeprefix('Value error, ')}"


def _graph_problem(spec: Any) -> str | None:
    """The DAG's own message (it names the field, e.g. `spec.steps[1].dependsOn[0]`) for a
    spec whose steps parse but whose graph the model rejects; None if that is not the case."""
    try:
        steps = [Step.model_validate(s) for s in (spec or {}).get("steps") or []]
        final = [Step.model_validate(s) for s in (spec or {}).get("finally") or []]
        build(WorkflowSpec.model_construct(steps=steps, finally_steps=final or None))
    except DagError as exc:
        return str(exc)
    except (ValidationError, AttributeError, TypeError):
        return None
    return None


def spec_problems(spec: Any) -> list[str]:
    """Why a Workflow spec cannot run, each problem naming its field; [] when it can.

    The same `validate_workflow` that `taskforge validate` and the Valid condition use; the
    pydantic models first, for the few rules the CRD schema cannot express.
    """
    too_big = spec_size_problem(spec)  # untyped JSON has no CRD limit (engine/sizes.py)
    if too_big is not None:
        return [too_big]
    try:
        parsed = WorkflowSpec.model_validate(spec or {})
    except ValidationError as exc:
        graph = _graph_problem(spec)
        if graph is not None and all(not e["loc"] for e in exc.errors()):
            return [graph]  # the model's graph check, said with the field path
        return [_pydantic_problem(e) for e in exc.errors()[:10]]
    return validate_workflow(parsed)


def _reject(field: str, problems: list[str]) -> None:
    if problems:
        text = "; ".join(f"{field}.{p.removeprefix('spec.')}" if field != "spec" else p
                         for p in problems[:20])
        raise kopf.AdmissionError(text[:MAX_MESSAGE], code=422)


@kopf.on.validate(GROUP, VERSION, "workflows", id=VALIDATE_WORKFLOW_ID,
                  operations=["CREATE", "UPDATE"], persistent=True)
async def validate_workflow_hook(body: kopf.Body, **kwargs: Any) -> None:
    """Reject at apply what the schema cannot see: cycles, templates naming undeclared params
    or later steps, cron syntax and time zones. An update that leaves the spec alone is let
    through, so a Workflow that became invalid can still be relabelled or deleted."""
    old = kwargs.get("old")
    spec = body.get("spec")
    if old is not None and old.get("spec") == spec:
        return
    _reject("spec", await asyncio.to_thread(spec_problems, spec))


@kopf.on.validate(GROUP, VERSION, "workflowruns", id=VALIDATE_RUN_ID,
                  operations=["CREATE", "UPDATE"], persistent=True)
async def validate_run_hook(body: kopf.Body, **kwargs: Any) -> None:
    """The same checks for a run's inline `workflowSpec`."""
    spec = (body.get("spec") or {}).get("workflowSpec")
    old = kwargs.get("old")
    if spec is None or (old is not None and (old.get("spec") or {}).get("workflowSpec") == spec):
        return
    _reject("spec.workflowSpec", await asyncio.to_thread(spec_problems, spec))


def _self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A certificate for `host` that is its own CA: the API server trusts it through the
    caBundle kopf writes into the configuration it manages."""
    from cryptography import x509  # noqa: PLC0415 - only the local mode needs it
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "tls.crt", directory / "tls.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    keyfile.chmod(0o600)
    return certfile, keyfile


CHART_CERT_DIR = "/etc/taskforge/admission"


def _local_certificate(config: OperatorConfig, host: str) -> tuple[Path, Path]:
    """The local mode's certificate: kept in TASKFORGE_ADMISSION_CERT_DIR when that is set,
    so an operator restarted (even by kill -9) serves the certificate whose CA the webhook
    configuration already holds; the API server would otherwise refuse every run until kopf
    has patched in the new CA. Without it, a fresh one in a temporary directory."""
    if config.admission_cert_dir == CHART_CERT_DIR:
        return _self_signed(Path(tempfile.mkdtemp(prefix="taskforge-tls-")), host)
    directory = Path(config.admission_cert_dir)
    certfile, keyfile = directory / "tls.crt", directory / "tls.key"
    if certfile.is_file() and keyfile.is_file():
        return certfile, keyfile
    directory.mkdir(parents=True, exist_ok=True)
    return _self_signed(directory, host)


async def _no_admission_server(_: Any) -> AsyncIterator[Any]:
    """An admission "server" for mode off: waits forever, never yields a client config."""
    await asyncio.Event().wait()
    yield None  # never reached; makes this an async generator, as kopf expects


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """Set kopf's admission server up for the configured mode."""
    mode = config.admission
    if mode == "off":
        log.warning("admission webhook off: runs that name a Secret or ConfigMap will fail"
                    " with Forbidden, because their creator is not recorded")
        # kopf refuses to start when admission handlers exist (ours are registered at
        # import) and no server is set; this one serves nothing, and with no
        # settings.admission.managed no webhook configuration is ever made.
        settings.admission.server = cast(Any, _no_admission_server)
        return
    if mode == "local":
        host = "127.0.0.1"
        certfile, keyfile = _local_certificate(config, host)
        settings.admission.server = AdmissionServer(
            addr=host, port=config.admission_port, host=host,
            certfile=str(certfile), pkeyfile=str(keyfile),
        )
        settings.admission.managed = MANAGED_CONFIGURATION
        return
    cert_dir = Path(config.admission_cert_dir)
    settings.admission.server = AdmissionServer(
        addr="0.0.0.0", port=config.admission_port,  # the Service routes here
        certfile=str(cert_dir / "tls.crt"), pkeyfile=str(cert_dir / "tls.key"),
    )



async def served_elsewhere(port: int) -> bool:
    """Whether another replica still serves the local webhook port (kopf binds it with
    SO_REUSEPORT, so replicas on one host share it): then the configuration is theirs too
    and must stay. Asked after this replica's own server has stopped."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def remove_managed_configuration() -> None:
    """Local mode, on a clean stop: a configuration left behind would make the API server
    refuse every run (failure policy Fail) until an operator serves it again."""
    try:
        authz.delete_webhook_configurations(MANAGED_CONFIGURATION)
    except Exception as exc:
        log.warning("could not remove webhook configuration %s: %s", MANAGED_CONFIGURATION, exc)
