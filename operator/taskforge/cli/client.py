"""A thin wrapper over lightkube for the CLI: kubeconfig, context, namespace.

Why lightkube and not the kubernetes client the operator uses: `pip install taskforge` is
the CLI, and the kubernetes client with what only it needs is ~140 MiB of the 188 MiB
that install took; lightkube with its models and HTTP stack is ~15 MiB. It reads
kubeconfigs as kubectl does for what the CLI needs (client certificates, tokens, token
files, exec plugins, in-cluster service accounts), and its `ApiError` carries the
apiserver's Status. The operator keeps the kubernetes client and kopf
(`taskforge[operator]`).

Unlike `taskforge.adapters.kube` (one process-wide client, in-cluster first, for the
operator), the CLI builds its client from the options a person typed: `--kubeconfig`,
`--context` and `-n`, with kubectl's defaults (the KUBECONFIG variable, which may list
several files, the current context, the context's namespace, else "default"). Objects are
lightkube's generic resources, handed to the commands as plain JSON dicts; a missing object
or CRD becomes a one-line `CliError`, other API errors are described by `errors.describe`.

The cluster options are accepted both before the command (`taskforge -n ns get r`) and
after it (`taskforge get r -n ns`, the way kubectl and its plugins are used); the value
given after the command wins.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import typer
import yaml
from lightkube import ALL_NS, ApiError, Client, ConfigError, KubeConfig, NotReadyError, SingleConfig
from lightkube import operators as ops
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

from taskforge import GROUP, VERSION
from taskforge.cli.errors import CliError, api_message
from taskforge.cli.options import RUNS, WORKFLOWS, ClusterOptions

_KINDS = {RUNS: "WorkflowRun", WORKFLOWS: "Workflow"}
_SINGULAR = {RUNS: "run", WORKFLOWS: "workflow"}
# connect, then each read: an unreachable cluster fails fast, not after minutes. Watches
# and followed logs have no read timeout (lightkube lifts it); a watch asks the server to
# end it after _WATCH_SECONDS, and lightkube then resumes from the last version seen.
_TIMEOUT = httpx2.Timeout(30.0, connect=5.0)
_WATCH_SECONDS = 60
_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_T = TypeVar("_T")


def connect(
    ctx: typer.Context,
    namespace: str | None = None,
    context: str | None = None,
    kubeconfig: Path | None = None,
) -> Cluster:
    """A client from the command's cluster options layered over the global ones."""
    base = ctx.find_root().obj
    options = ClusterOptions(kubeconfig, context, namespace).over(
        base if isinstance(base, ClusterOptions) else ClusterOptions()
    )
    return Cluster.from_options(options)


def chosen_namespace(
    ctx: typer.Context, namespace: str | None = None, context: str | None = None,
    kubeconfig: Path | None = None,
) -> str:
    """The namespace a command means, as kubectl would choose it (the option, else the
    context's namespace, else "default"), without contacting the cluster."""
    base = ctx.find_root().obj
    options = ClusterOptions(kubeconfig, context, namespace).over(
        base if isinstance(base, ClusterOptions) else ClusterOptions()
    )
    if options.namespace:
        return options.namespace
    paths = _kubeconfig_paths(options)
    if paths:
        try:
            return _load_kubeconfig(paths).get(options.context).namespace  # type: ignore[union-attr]
        except Exception:  # an unreadable kubeconfig: the default, as kubectl falls back
            return "default"
    return "default"


def _kubeconfig_paths(options: ClusterOptions) -> list[Path]:
    """The kubeconfig files that exist, in kubectl's order of precedence."""
    if options.kubeconfig is not None:
        if not options.kubeconfig.exists():
            raise CliError(f"kubeconfig {options.kubeconfig} does not exist")
        return [options.kubeconfig]
    listed = os.environ.get("KUBECONFIG") or "~/.kube/config"
    paths = [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
    return [p for p in paths if p.is_file()]


def _load_kubeconfig(paths: list[Path]) -> KubeConfig:
    """One kubeconfig from the files KUBECONFIG lists, merged by kubectl's rule: the first
    file to name a cluster, context or user wins, and so does the first current-context.
    Relative file references are made absolute against the file they appear in."""
    if len(paths) == 1:
        return KubeConfig.from_file(paths[0])
    merged: dict[str, Any] = {"clusters": [], "contexts": [], "users": []}
    for path in paths:
        doc = yaml.safe_load(path.read_text()) or {}
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: not a kubeconfig")
        merged.setdefault("current-context", doc.get("current-context"))
        merged["current-context"] = merged["current-context"] or doc.get("current-context")
        for section, item in (("clusters", "cluster"), ("contexts", "context"),
                              ("users", "user")):
            known = {e["name"] for e in merged[section]}
            for entry in doc.get(section) or []:
                if entry.get("name") in known:
                    continue
                body = dict(entry.get(item) or {})
                for key in ("certificate-authority", "client-certificate", "client-key",
                            "tokenFile"):
                    if body.get(key) and not Path(body[key]).is_absolute():
                        body[key] = str(path.parent / body[key])
                merged[section].append({"name": entry.get("name"), item: body})
    return KubeConfig.from_dict(merged, fname=paths[0])


def kube_config(options: ClusterOptions) -> SingleConfig:
    """The kubeconfig context the options mean, by kubectl's rules, else the pod's
    ServiceAccount when running in a cluster. (Also for clients of other servers that
    authenticate as the kubeconfig's user, such as cli/webapi.py.)"""
    paths = _kubeconfig_paths(options)
    if paths:
        try:
            config = _load_kubeconfig(paths).get(options.context)
        except ConfigError:
            raise  # lightkube's sentence; errors.describe prefixes "kubeconfig:"
        except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
            # a context naming a missing cluster or user, a field of the wrong type
            raise CliError(f"kubeconfig {os.pathsep.join(map(str, paths))}: cannot read"
                           f" it: {type(exc).__name__}: {exc}") from None
    elif options.context:
        raise CliError(f"context {options.context!r}: no kubeconfig found")
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config = KubeConfig.from_service_account(_SA_DIR).get()
    else:
        where = os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise CliError(f"no kubeconfig found at {where}: set KUBECONFIG or pass --kubeconfig")
    if config is None:  # pragma: no cover (get() raises without a default)
        raise CliError("kubeconfig: no context")
    return config


@functools.cache
def _resource(group: str, version: str, kind: str, plural: str) -> Any:
    """A lightkube generic resource, created once per process (its registry refuses a
    second class for the same kind)."""
    return create_namespaced_resource(group, version, kind, plural)


def _crd(plural: str) -> Any:
    return _resource(GROUP, VERSION, _KINDS[plural], plural)


def _retrying(call: Callable[[], _T]) -> _T:
    """One quick retry when the connection could not be made, and a few on 429/503 (the
    apiserver did not process those requests, e.g. while a new CRD's storage starts).
    Nothing else is re-sent: a create that may have been processed must not be repeated."""
    for attempt in range(4):
        try:
            return call()
        except httpx2.ConnectError:
            if attempt >= 1:
                raise
        except ApiError as exc:
            if exc.status.code not in (429, 503) or attempt >= 3:
                raise
            after = exc.response.headers.get("Retry-After", "") if exc.response else ""
            time.sleep(min(float(after), 2.0) if after.isdigit() else 0.2 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _plain(obj: Any) -> dict[str, Any]:
    """lightkube's generic objects are dicts of plain JSON values; yaml.safe_dump wants the
    dict itself, not a subclass."""
    return dict(obj)


class Cluster:
    """The Taskforge resources, pods and logs of one namespace of one cluster."""

    def __init__(self, client: Client, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    @classmethod
    def from_options(cls, options: ClusterOptions) -> Cluster:
        config = kube_config(options)
        namespace = options.namespace or config.namespace
        return cls(Client(config, namespace=namespace, timeout=_TIMEOUT), namespace)

    @property
    def server(self) -> str:
        return str(self.client.config.cluster.server)

    # --- Taskforge objects --------------------------------------------------------------

    def get(self, plural: str, name: str) -> dict[str, Any]:
        """One object; a clear error when it does not exist."""
        try:
            return _plain(_retrying(lambda: self.client.get(_crd(plural), name)))
        except ApiError as exc:
            self._not_found(plural, name, exc)
            raise

    def list_objects(
        self, plural: str, *, all_namespaces: bool = False, label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        return self._list(plural, all_namespaces, label_selector, field_selector)[0]

    def _list(
        self, plural: str, all_namespaces: bool, label_selector: str | None,
        field_selector: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The objects and the list's resourceVersion (where a watch starts)."""
        def once() -> tuple[list[dict[str, Any]], str | None]:
            listing = self.client.list(
                _crd(plural), namespace=ALL_NS if all_namespaces else self.namespace,
                labels=labels(label_selector), fields=fields(field_selector),
            )
            items = [_plain(o) for o in listing]  # lightkube lists on the first iteration
            try:
                return items, listing.resourceVersion
            except NotReadyError:  # a list without metadata.resourceVersion
                return items, None

        try:
            return _retrying(once)
        except ApiError as exc:
            self._not_found(plural, None, exc)
            raise

    def watch_list(
        self, plural: str, *, all_namespaces: bool = False, label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """`(event, object)` for each object listed now, then `("LISTED", {})`, then each
        change (ADDED, MODIFIED, DELETED) as it happens: what `list --watch` prints. An
        expired resourceVersion (410) lists again, announcing every object as MODIFIED."""
        first = True
        while True:
            items, version = self._list(plural, all_namespaces, label_selector, field_selector)
            for obj in items:
                yield ("ADDED" if first else "MODIFIED"), obj
            if first:
                yield "LISTED", {}
                first = False
            events = self.client.watch(
                _crd(plural), namespace=ALL_NS if all_namespaces else self.namespace,
                labels=labels(label_selector), fields=fields(field_selector),
                resource_version=version, server_timeout=_WATCH_SECONDS,
            )
            try:
                for kind, obj in events:
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        yield kind, _plain(obj)
            except ApiError as exc:
                if exc.status.code != 410:
                    raise CliError(f"watch failed: {api_message(exc)}") from None
                # expired: list again

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        resource = _crd(plural)
        try:
            return _plain(_retrying(lambda: self.client.create(
                resource(body), namespace=self.namespace)))
        except ApiError as exc:
            self._not_found(plural, None, exc)
            if exc.status.code in (400, 409, 422):
                message = api_message(exc)
                raise CliError(f"cannot create the {_SINGULAR[plural]}: {message}") from None
            raise

    def patch(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the object's spec or metadata (never status: that is the operator's)."""
        try:
            return _plain(_retrying(lambda: self.client.patch(
                _crd(plural), name, patch, patch_type=PatchType.MERGE)))
        except ApiError as exc:
            self._not_found(plural, name, exc)
            raise

    def watch(self, plural: str, name: str) -> Iterator[dict[str, Any] | None]:
        """The object now and after each change; None once it is deleted. An expired
        resourceVersion (410) starts again from a fresh get."""
        obj = self.get(plural, name)
        yield obj
        while True:
            events = self.client.watch(
                _crd(plural), fields={"metadata.name": name},
                resource_version=obj["metadata"].get("resourceVersion"),
                server_timeout=_WATCH_SECONDS,
            )
            try:
                for kind, data in events:
                    if kind == "DELETED":
                        yield None
                        return
                    if kind in ("ADDED", "MODIFIED"):
                        yield _plain(data)
            except ApiError as exc:
                if exc.status.code != 410:
                    raise CliError(f"watch failed: {api_message(exc)}") from None
                obj = self.get(plural, name)
                yield obj

    def _not_found(self, plural: str, name: str | None, exc: ApiError) -> None:
        """A 404 names the object, or (without a Status naming it) the CRD is missing."""
        if exc.status.code != 404:
            return
        details = exc.status.details
        if details is None or not details.name:
            raise CliError(
                f"the server does not serve {plural}.{GROUP}/{VERSION}: are the Taskforge"
                " CRDs installed? (kubectl apply --server-side -f crds/)"
            ) from None
        if name is not None:
            raise CliError(
                f"{plural}.{GROUP} {name!r} not found in namespace {self.namespace!r}"
            ) from None

    # --- pods, logs and stored results ---------------------------------------------------

    def pods(self, label_selector: str) -> list[dict[str, Any]]:
        pod = _resource("", "v1", "Pod", "pods")
        return _retrying(lambda: [_plain(p) for p in self.client.list(
            pod, namespace=self.namespace, labels=labels(label_selector))])

    def log_lines(self, pod: str, container: str, *, follow: bool = False) -> Iterator[str]:
        """The container's log, line by line as it arrives (with `follow`, until the
        container ends: a step may stay silent for as long as it runs)."""
        try:
            stream = _retrying(lambda: self.client.log(
                pod, namespace=self.namespace, container=container, follow=follow,
                newlines=False))
        except ApiError as exc:
            if exc.status.code in (400, 404):
                raise CliError(f"no logs for pod {pod}: {api_message(exc)}") from None
            raise
        return iter(stream)

    def config_map(self, name: str) -> dict[str, Any] | None:
        """A ConfigMap of the namespace as JSON, None when there is none (stored results:
        `adapters.resultpack.read_result` reads them through this)."""
        config_map = _resource("", "v1", "ConfigMap", "configmaps")
        try:
            return _plain(_retrying(lambda: self.client.get(config_map, name)))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise


def labels(selector: str | None) -> dict[str, Any] | None:
    """A kubectl label selector (`-l`), sent as typed. lightkube builds selectors from
    `{key: operator}`, and its "exists" operator is the bare text of its key; so the whole
    selector as one key goes out verbatim, and the apiserver parses it (set-based terms
    too) and words any error, as for kubectl. tests/unit/test_cli_client.py pins this."""
    return {selector: None} if selector else None


def fields(selector: str | None) -> Any:
    """A kubectl field selector (`--field-selector`): terms `key=value`, `key==value` or
    `key!=value`, comma-separated (the only forms field selectors have), as the list of
    `(key, operator)` pairs lightkube's selector builder takes (`Client.list` annotates a
    dict, which could not say `a!=x,a!=y`)."""
    if not selector:
        return None
    out: list[tuple[str, Any]] = []
    for term in selector.split(","):
        key, op, value = term.partition("!=")
        if op:
            out.append((key.strip(), ops.not_equal(value.strip())))
            continue
        key, op, value = term.partition("=")
        if not op or not key.strip():
            raise CliError(f"--field-selector: {term!r} is not key=value, key==value or"
                           " key!=value")
        out.append((key.strip(), ops.equal(value.removeprefix("=").strip())))
    return out


__all__ = [  # RUNS and WORKFLOWS too: commands import them from here or from options
    "RUNS", "WORKFLOWS", "Cluster", "chosen_namespace", "connect", "fields", "kube_config",
    "labels",
]
