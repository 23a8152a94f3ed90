"""`taskforge logs`: the output of a run's step pods, read through the Kubernetes API.

Pods are found by the labels every step Job carries (`taskforge.io/run`, `.../step`,
`.../attempt`), so this works for any attempt whose pod still exists, without knowing Job
names. Log lines are written as bytes-faithful text, never through rich: a step printing
`[bold]` must not be restyled. With `-f`, each started pod gets a streaming request of its
own (a thread), and new pods - later steps, retry attempts - are picked up until the run
has ended and every stream is drained.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskforge.cli.archive import (
    ArchiveSource,
    ArchiveUrlOpt,
    Found,
    UidOpt,
    fallback_error,
    logs_archived,
    source,
)
from taskforge.cli.completion import run_names
from taskforge.cli.errors import CliError, describe
from taskforge.cli.options import RUNS, ContextOpt, KubeconfigOpt, NamespaceOpt
from taskforge.cli.webapi import DEFAULT_SERVICE, ServerOpt, ServiceOpt, TokenOpt

if TYPE_CHECKING:  # `logs --help` must not load the client: imported in bodies
    from taskforge.cli.client import Cluster

CONTAINER = "step"
_POLL_SECONDS = 1.0
_COLOURS = ("36", "35", "33", "32", "34", "91", "96", "95", "93", "92")


@dataclass(frozen=True)
class StepPod:
    step: str
    attempt: int
    name: str
    uid: str
    created: str
    started: bool


def _started(pod: dict[str, Any]) -> bool:
    """The container ran (or runs): only then does the kubelet have logs to give."""
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") == CONTAINER:
            state = cs.get("state") or {}
            return "running" in state or "terminated" in state
    return status.get("phase") in ("Succeeded", "Failed")


def _step_pods(pods: list[dict[str, Any]], names: dict[str, str]) -> list[StepPod]:
    from taskforge.engine.naming import LABEL_ATTEMPT, LABEL_STEP  # noqa: PLC0415

    out = []
    for pod in pods:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        step_label = labels.get(LABEL_STEP, "")
        try:
            attempt = int(labels.get(LABEL_ATTEMPT, "1"))
        except ValueError:
            attempt = 1
        out.append(StepPod(
            step=names.get(step_label, step_label),
            attempt=attempt,
            name=meta["name"],
            uid=meta.get("uid", meta["name"]),
            created=meta.get("creationTimestamp", ""),
            started=_started(pod),
        ))
    return out


def _latest(pods: list[StepPod]) -> list[StepPod]:
    """The newest attempt of each step (and the newest pod of it, should there be two)."""
    best: dict[str, StepPod] = {}
    for pod in pods:
        current = best.get(pod.step)
        if current is None or (pod.attempt, pod.created) > (current.attempt, current.created):
            best[pod.step] = pod
    return list(best.values())


class _Writer:
    """Serialises lines from the streaming threads; prefixes them when showing all steps."""

    def __init__(self, prefixed: bool, order: list[str]) -> None:
        self.prefixed = prefixed
        self.colour = sys.stdout.isatty()
        self.width = max((len(s) for s in order), default=0)
        self.lock = threading.Lock()
        self.order = order

    def prefix(self, pod: StepPod) -> str:
        if not self.prefixed:
            return ""
        label = pod.step if pod.attempt <= 1 else f"{pod.step}#{pod.attempt}"
        text = f"[{label}]".ljust(self.width + 2) + " "
        if not self.colour:
            return text
        index = self.order.index(pod.step) if pod.step in self.order else len(pod.step)
        return f"\x1b[{_COLOURS[index % len(_COLOURS)]}m{text}\x1b[0m"

    def line(self, pod: StepPod, text: str) -> None:
        with self.lock:
            sys.stdout.write(f"{self.prefix(pod)}{text}\n")
            sys.stdout.flush()

    def note(self, text: str) -> None:
        with self.lock:
            sys.stdout.flush()
            print(text, file=sys.stderr, flush=True)


def _stream(cluster: Cluster, pod: StepPod, writer: _Writer, follow: bool) -> None:
    try:
        for text in cluster.log_lines(pod.name, CONTAINER, follow=follow):
            writer.line(pod, text)
    except Exception as exc:  # a thread must report in one line, never die with a traceback
        message = describe(exc) or f"{type(exc).__name__}: {exc}"
        writer.note(f"{pod.step}: {message}")


def _archived(src: ArchiveSource, namespace: str, run: str, step: str | None,
              attempt: int | None, *, uid: str | None, missing: CliError) -> bool:
    """Print the logs the run archive kept (cli/archive.py); False when it has none, or
    there is no API to ask. `missing`: the error given, with the archive's reason, when the
    archive cannot be read."""
    try:
        return logs_archived(src, namespace, run, step, attempt, uid=uid) is Found.SHOWN
    except CliError as why:
        error = fallback_error(missing, why, src)
        if error is missing:  # no API to ask here: as without an archive
            return False
        raise error from None


def logs(
    ctx: typer.Context,
    *,
    run: Annotated[str, typer.Argument(help="Name of the WorkflowRun.", show_default=False,
                                       autocompletion=run_names)],
    step: Annotated[
        str | None,
        typer.Argument(help="Only this step (default: all, each line prefixed by its step).",
                       show_default=False),
    ] = None,
    attempt: Annotated[
        int | None,
        typer.Option("--attempt", min=1, help="This attempt (default: the latest).",
                     show_default=False),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream new output until the run ends.")
    ] = False,
    uid: UidOpt = None,
    server: ServerOpt = None,
    service: ServiceOpt = DEFAULT_SERVICE,
    token: TokenOpt = None,
    archive_url: ArchiveUrlOpt = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Print the logs of a run's step pods (the latest attempt of each by default). When the
    run, its Jobs or its pods are gone, the logs the run archive kept (through the web API)."""
    from taskforge.cli.client import connect  # noqa: PLC0415
    from taskforge.cli.runs import layout, spec_of  # noqa: PLC0415
    from taskforge.engine.naming import LABEL_ATTEMPT, LABEL_RUN, LABEL_STEP, label_value  # noqa: PLC0415

    cluster = connect(ctx, namespace, context, kubeconfig)
    src = source(ctx, context, kubeconfig, server=server, service=service, token=token,
                 archive_url=archive_url)  # connects to the API only when asked

    try:
        obj = cluster.get(RUNS, run)
        if uid and obj["metadata"].get("uid") != uid:  # an earlier run of that name
            raise CliError(f"run {run!r} in the cluster has another uid than {uid}")
    except CliError as exc:  # gone from the cluster: the run archive may hold its logs
        if _archived(src, cluster.namespace, run, step, attempt, uid=uid, missing=exc):
            return
        raise
    lay = layout(spec_of(cluster, obj))
    statuses: dict[str, Any] = (obj.get("status") or {}).get("steps") or {}
    order = lay.order + [s for s in statuses if s not in lay.order]
    if step is not None and order and step not in order:
        raise CliError(f"run {run!r} has no step {step!r} (steps: {', '.join(order)})")
    selector = f"{LABEL_RUN}={label_value(run)}"
    if step is not None:
        selector += f",{LABEL_STEP}={label_value(step)}"
    if attempt is not None:
        selector += f",{LABEL_ATTEMPT}={attempt}"
    names = {label_value(s): s for s in order}
    writer = _Writer(prefixed=step is None, order=order)

    def rank(pod: StepPod) -> tuple[int, int, str]:
        return (order.index(pod.step) if pod.step in order else len(order), pod.attempt, pod.name)

    if follow:
        _follow(cluster, run=run, selector=selector, names=names, writer=writer, rank=rank)
        return
    pods = sorted(_latest(_step_pods(cluster.pods(selector), names)), key=rank)
    if not pods:
        from taskforge.cli.render import is_terminal  # noqa: PLC0415

        if step is None:
            # An ended run's pods went with their Jobs' TTL: the archive may have the logs.
            # A run that has not started any pod yet is not worth a call to the API.
            if is_terminal(obj) and _archived(src, cluster.namespace, run, None, attempt, uid=uid,
                                              missing=CliError(f"run {run} has no step pods")):
                return
            writer.note(f"run {run} has no step pods" + ("" if is_terminal(obj) else " yet"))
            return
        st = statuses.get(step) or {}
        what = f"attempt {attempt}" if attempt else f"step {step!r}"
        why = "its result was reused" if st.get("reused") else f"it is {st.get('phase', 'Pending')}"
        missing = CliError(f"no pod for {what} of run {run!r}: {why}, or its Job was deleted")
        ended = st.get("phase") in ("Succeeded", "Failed", "Cancelled", "TimedOut", "Skipped")
        if (ended or is_terminal(obj) or attempt) and not st.get("reused") and _archived(
                src, cluster.namespace, run, step, attempt, uid=uid, missing=missing):
            return  # the Job's TTL deleted it: the archive had the log
        raise missing
    for pod in pods:
        if not pod.started:
            writer.note(f"{pod.step}: attempt {pod.attempt} has not started yet")
            continue
        _stream(cluster, pod, writer, follow=False)


def _follow(
    cluster: Cluster,
    *,
    run: str,
    selector: str,
    names: dict[str, str],
    writer: _Writer,
    rank: Any,
) -> None:
    """Stream every pod as it starts, until the run has ended and all streams are done.

    Attempts older than the newest one present at the start are history and skipped, as
    without -f; every attempt that appears later is shown.
    """
    from taskforge.cli.render import is_terminal  # noqa: PLC0415

    seen: set[str] = set()
    threads: list[threading.Thread] = []
    first = True
    shown: dict[str, int] = {}
    while True:
        ended = is_terminal(cluster.get(RUNS, run))  # before listing: then no pod is missed
        pods = sorted(_step_pods(cluster.pods(selector), names), key=rank)
        if first:
            latest = {p.uid for p in _latest(pods)}
            seen.update(p.uid for p in pods if p.uid not in latest)
            first = False
        fresh = [p for p in pods if p.uid not in seen and p.started]
        for pod in fresh:
            seen.add(pod.uid)
            if not writer.prefixed and shown.get(pod.step, 0):
                writer.note(f"==> {pod.step}: attempt {pod.attempt} <==")
            shown[pod.step] = pod.attempt
            thread = threading.Thread(
                target=_stream, args=(cluster, pod, writer, True), daemon=True
            )
            thread.start()
            threads.append(thread)
        if ended and not fresh and not any(t.is_alive() for t in threads):
            return
        time.sleep(_POLL_SECONDS)
