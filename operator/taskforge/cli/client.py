"""A thin wrapper over the kubernetes client for the CLI: kubeconfig, context, namespace.

Unlike `taskforge.adapters.kube` (one process-wide client, in-cluster first, for the
operator), the CLI builds its client from the options a person typed: `--kubeconfig`,
`--context` and `-n`, with kubectl's defaults (the KUBECONFIG variable, the current
context, the context's namespace, else "default"). Calls return plain JSON dicts, like the
adapters, and turn the apiserver's answers into one-line `CliError`s.

The cluster options are accepted both before the command (`taskforge -n ns get r`) and
after it (`taskforge get r -n ns`, the way kubectl and its plugins are used); the value
given after the command wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from taskforge import GROUP, VERSION
from taskforge.cli.errors import CliError, api_message
from taskforge.cli.options import ClusterOptions

RUNS = "workflowruns"
WORKFLOWS = "workflows"
MERGE_PATCH = "application/merge-patch+json"
_SINGULAR = {RUNS: "run", WORKFLOWS: "workflow"}
_TIMEOUT = (5.0, 30.0)  # connect, read: an unreachable cluster fails fast, not after minutes
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

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
    path = _kubeconfig_path(options)
    if _has_kubeconfig(path):
        try:
            return _context_namespace(path, options.context) or "default"
        except Exception:  # an unreadable kubeconfig: the default, as kubectl falls back
            return "default"
    return "default"


def _kubeconfig_path(options: ClusterOptions) -> str:
    if options.kubeconfig is not None:
        if not options.kubeconfig.exists():
            raise CliError(f"kubeconfig {options.kubeconfig} does not exist")
        return str(options.kubeconfig)
    return os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())


def _has_kubeconfig(path: str) -> bool:
    return any(Path(p).expanduser().exists() for p in path.split(os.pathsep) if p)


class Cluster:
    """The Taskforge resources, pods and logs of one namespace of one cluster."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    @classmethod
    def from_options(cls, options: ClusterOptions) -> Cluster:
        cfg = client.Configuration()
        path = _kubeconfig_path(options)
        namespace = options.namespace
        if _has_kubeconfig(path) or options.context:
            if not _has_kubeconfig(path):
                raise CliError(f"no kubeconfig found at {path}")
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path,
                context=options.context,
                client_configuration=cfg,
                persist_config=False,
            )
            if namespace is None:
                namespace = _context_namespace(path, options.context)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=cfg
            )
            if namespace is None and _SA_NAMESPACE.exists():
                namespace = _SA_NAMESPACE.read_text().strip()
        else:
            raise CliError(
                f"no kubeconfig found at {path}: set KUBECONFIG or pass --kubeconfig"
            )
        # One quick retry on connect and a few on 429/503 with Retry-After (the apiserver
        # did not process those requests, e.g. while a new CRD's storage starts), none on
        # read: a request that may have been processed, such as a create, is never re-sent.
        cfg.retries = urllib3.Retry(
            total=4, connect=1, read=0, status=3, redirect=0, other=0,
            allowed_methods=None, backoff_factor=0.2,
        )
        return cls(client.ApiClient(cfg), namespace or "default")

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    # --- Taskforge objects --------------------------------------------------------------

    def get(self, plural: str, name: str) -> dict[str, Any]:
        """One object; a clear error when it does not exist."""
        try:
            response = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name,
                _preload_content=False, _request_timeout=_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                self._check_served(plural, exc)
                raise CliError(
                    f"{plural}.{GROUP} {name!r} not found in namespace {self.namespace!r}"
                ) from None
            raise
        return _json(response)

    def list_objects(
        self, plural: str, *, all_namespaces: bool = False, label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"_preload_content": False, "_request_timeout": _TIMEOUT}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if field_selector:
            kwargs["field_selector"] = field_selector
        try:
            if all_namespaces:
                response = self.custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, **kwargs
                )
            else:
                response = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, **kwargs
                )
        except ApiException as exc:
            if exc.status == 404:
                self._check_served(plural, exc)
            raise
        items: list[dict[str, Any]] = _json(response).get("items") or []
        return items

    def watch_list(
        self, plural: str, *, all_namespaces: bool = False, label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """`(event, object)` for each object listed now, then `("LISTED", {})`, then each
        change (ADDED, MODIFIED, DELETED) as it happens: what `list --watch` prints. An
        expired resourceVersion (410) lists again, announcing every object as MODIFIED."""
        selectors: dict[str, Any] = {k: v for k, v in (("label_selector", label_selector),
                                       ("field_selector", field_selector)) if v}

        def lister(**kwargs: Any) -> Any:
            if all_namespaces:
                return self.custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, **selectors, **kwargs)
            return self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, **selectors, **kwargs)

        first = True
        while True:
            listed = _json(lister(_preload_content=False, _request_timeout=_TIMEOUT))
            for obj in listed.get("items") or []:
                yield ("ADDED" if first else "MODIFIED"), obj
            if first:
                yield "LISTED", {}
                first = False
            version = (listed.get("metadata") or {}).get("resourceVersion")
            while version is not None:
                response: Any = lister(
                    watch=True, resource_version=version, allow_watch_bookmarks=True,
                    timeout_seconds=60,
                    _preload_content=False, _request_timeout=(_TIMEOUT[0], 90.0),
                )
                try:
                    for line in lines(response):
                        event = json.loads(line)
                        kind, data = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            if data.get("code") != 410:
                                raise CliError(f"watch failed: {data.get('message', data)}")
                            version = None  # list again
                            break
                        version = data.get("metadata", {}).get("resourceVersion", version)
                        if kind in ("ADDED", "MODIFIED", "DELETED"):
                            yield kind, data
                finally:
                    response.release_conn()

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, body,
                _preload_content=False, _request_timeout=_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                self._check_served(plural, exc)
            if exc.status in (400, 409, 422):
                message = api_message(exc)
                raise CliError(f"cannot create the {_SINGULAR[plural]}: {message}") from None
            raise
        return _json(response)

    def patch(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the object's spec or metadata (never status: that is the operator's)."""
        try:
            response = self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name, patch,
                _content_type=MERGE_PATCH, _preload_content=False, _request_timeout=_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                self._check_served(plural, exc)
                raise CliError(
                    f"{plural}.{GROUP} {name!r} not found in namespace {self.namespace!r}"
                ) from None
            raise
        return _json(response)

    def watch(self, plural: str, name: str) -> Iterator[dict[str, Any] | None]:
        """The object now and after each change; None once it is deleted.

        A plain watch request rather than `kubernetes.watch.Watch`: the events are used as
        plain dicts, and an expired resourceVersion (410) simply restarts from a fresh get.
        """
        obj = self.get(plural, name)
        yield obj
        version = obj["metadata"].get("resourceVersion")
        while True:
            response: Any = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural,
                field_selector=f"metadata.name={name}", watch=True,
                resource_version=version, allow_watch_bookmarks=True, timeout_seconds=60,
                _preload_content=False, _request_timeout=(_TIMEOUT[0], 90.0),
            )
            try:
                for line in lines(response):
                    event = json.loads(line)
                    kind, data = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if data.get("code") != 410:
                            raise CliError(f"watch failed: {data.get('message', data)}")
                        obj = self.get(plural, name)
                        yield obj
                        version = obj["metadata"].get("resourceVersion")
                        break
                    version = data.get("metadata", {}).get("resourceVersion", version)
                    if kind == "DELETED":
                        yield None
                        return
                    if kind in ("ADDED", "MODIFIED"):
                        yield data
            finally:
                response.release_conn()

    def _check_served(self, plural: str, exc: ApiException) -> None:
        """A 404 without a Status naming the object means the CRD itself is missing."""
        try:
            details = json.loads(exc.body or "{}").get("details") or {}
        except ValueError:
            details = {}
        if not details.get("name"):
            raise CliError(
                f"the server does not serve {plural}.{GROUP}/{VERSION}: are the Taskforge"
                " CRDs installed? (kubectl apply --server-side -f crds/)"
            ) from None

    # --- pods and logs -------------------------------------------------------------------

    def pods(self, label_selector: str) -> list[dict[str, Any]]:
        response = self.core.list_namespaced_pod(
            self.namespace, label_selector=label_selector,
            _preload_content=False, _request_timeout=_TIMEOUT,
        )
        items: list[dict[str, Any]] = _json(response).get("items") or []
        return items

    def pod_log(self, pod: str, container: str, *, follow: bool = False) -> Any:
        """The raw log response (a urllib3 response); iterate it with `lines`."""
        # A follow may stay silent for as long as the step does: a day's read timeout then
        # (the client insists on a number).
        timeout = (_TIMEOUT[0], 86400.0) if follow else _TIMEOUT
        try:
            return self.core.read_namespaced_pod_log(
                pod, self.namespace, container=container, follow=follow,
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiException as exc:
            if exc.status in (400, 404):
                raise CliError(f"no logs for pod {pod}: {api_message(exc)}") from None
            raise


def lines(response: Any) -> Iterator[str]:
    """Complete text lines of a streamed (chunked) response, as they arrive."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield raw.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def _json(response: Any) -> dict[str, Any]:
    data = response.data
    return dict(json.loads(data)) if data else {}


def _context_namespace(path: str, context: str | None) -> str | None:
    contexts, current = config.list_kube_config_contexts(path)  # type: ignore[no-untyped-call]
    chosen = current
    if context is not None:
        chosen = next((c for c in contexts if c.get("name") == context), None)
    if not chosen:
        return None
    namespace = (chosen.get("context") or {}).get("namespace")
    return str(namespace) if namespace else None
