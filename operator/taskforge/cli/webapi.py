"""A client of the Taskforge web API (`taskforge.web`) for the CLI: `taskforge dlq` and the
run archive's reads (`list runs --archived`, the `get`/`logs` fallbacks: cli/archive.py) use it.

Two ways to reach the server:

* through the Kubernetes API server's service proxy (the default): the request goes to
  `/api/v1/namespaces/NS/services/NAME:http/proxy/...` with the kubeconfig's own
  credentials, so it needs no Ingress and no port-forward, only the right to `get
  services/proxy` on the chart's UI Service (`--service`, $TASKFORGE_UI_SERVICE, default
  taskforge-system/taskforge-ui). The API server authenticates that request and strips its
  Authorization header before proxying, so the caller's bearer token travels again in
  `X-Taskforge-Token`, for the web server's own TokenReview.
* directly (`--server URL`, $TASKFORGE_UI_SERVER): a local `taskforge ui` (whose token is
  printed when it starts) or an Ingress.

The token is `--token` ($TASKFORGE_UI_TOKEN), else the kubeconfig user's bearer token (a
token, a token file, or an exec plugin's). A user who authenticates with a client
certificate has no token the server could review: the error says to pass one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskforge.cli.errors import CliError
from taskforge.cli.options import ClusterOptions

if TYPE_CHECKING:  # `taskforge dlq --help` must not load the HTTP stack: imported in bodies
    import httpx2
    from lightkube.config.kubeconfig import SingleConfig

DEFAULT_SERVICE = "taskforge-system/taskforge-ui"
_PANEL = "Web API options"

ServerOpt = Annotated[
    str | None,
    typer.Option("--server", envvar="TASKFORGE_UI_SERVER", show_default=False,
                 rich_help_panel=_PANEL,
                 help="URL of a Taskforge API server (a local `taskforge ui`, an Ingress);"
                 " default: the cluster's, through the API server's service proxy."),
]
ServiceOpt = Annotated[
    str,
    typer.Option("--service", envvar="TASKFORGE_UI_SERVICE", rich_help_panel=_PANEL,
                 help="NAMESPACE/NAME of the chart's UI Service (ui.enabled=true)."),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="TASKFORGE_UI_TOKEN", show_default=False,
                 rich_help_panel=_PANEL,
                 help="Bearer token for the API (default: the kubeconfig user's)."),
]


def kube_config(ctx: typer.Context, context: str | None,
                kubeconfig: Path | None) -> SingleConfig:
    """The kubeconfig context the command means (options, else the global ones, else
    kubectl's rules, as every command reads it: cli/client.py), or in-cluster credentials."""
    from lightkube import ConfigError  # noqa: PLC0415

    from taskforge.cli.client import kube_config as load  # noqa: PLC0415

    base = ctx.find_root().obj
    options = ClusterOptions(kubeconfig, context, None).over(
        base if isinstance(base, ClusterOptions) else ClusterOptions())
    try:
        return load(options)
    except ConfigError as exc:
        raise CliError(f"kubeconfig: {exc}") from None


def _bearer(config: SingleConfig) -> str | None:
    """The kubeconfig user's bearer token, however it is obtained (exec plugins too)."""
    import httpx2  # noqa: PLC0415
    from lightkube.config.client_adapter import user_auth  # noqa: PLC0415

    auth = user_auth(config.user)
    if auth is None:
        return None
    flow = auth.sync_auth_flow(httpx2.Request("GET", str(config.cluster.server)))
    header = str(next(flow).headers.get("Authorization") or "")
    return header[7:] if header.lower().startswith("bearer ") else None


class ApiCallError(CliError):
    """The API answered an error. `status` is its HTTP status (0: not reached); `ours` is
    true when the Taskforge server itself answered (its JSON error shape), false when the
    answer came from on the way (the API server's proxy: no such Service, no right)."""

    def __init__(self, message: str, status: int = 0, *, ours: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.ours = ours


@dataclass
class WebApi:
    http: httpx2.Client
    prefix: str  # the proxy path, or ""
    where: str  # for messages

    @classmethod
    def connect(cls, config: SingleConfig | None, server: str | None, service: str,
                token: str | None) -> WebApi:
        import httpx2  # noqa: PLC0415
        from lightkube.config.client_adapter import Client as HttpClient  # noqa: PLC0415
        from lightkube.config.client_adapter import ConnectionParams  # noqa: PLC0415

        timeout = httpx2.Timeout(30.0, connect=5.0)
        if server:
            if token is None and config is not None:
                token = _bearer(config)
            if not token:
                raise CliError(f"the Taskforge API at {server} needs a token: pass --token"
                               " (the one `taskforge ui` printed, or `kubectl create token`)")
            http = httpx2.Client(base_url=server.rstrip("/"), timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}"})
            return cls(http, "", server)
        if config is None:  # pragma: no cover - callers pass one without --server
            raise CliError("no cluster to reach the Taskforge API through")
        svc_ns, _, svc_name = service.partition("/")
        if not svc_ns or not svc_name:
            raise CliError(f"--service {service!r}: expected NAMESPACE/NAME")
        token = token or _bearer(config)
        if not token:
            raise CliError(
                "the Taskforge API checks a bearer token and your kubeconfig user has none"
                " (a client certificate): pass --token (e.g. from `kubectl create token`),"
                " or use --server with a local `taskforge ui`")
        http = HttpClient(config, ConnectionParams(timeout=timeout))
        http.headers["X-Taskforge-Token"] = token
        prefix = f"/api/v1/namespaces/{svc_ns}/services/{svc_name}:http/proxy"
        return cls(http, prefix, f"service {service} (through the API server)")

    def call(self, method: str, path: str, *, params: dict[str, str] | None = None,
             json: Any = None) -> Any:
        import httpx2  # noqa: PLC0415

        try:
            response = self.http.request(method, self.prefix + path, params=params, json=json)
        except httpx2.HTTPError as exc:
            raise ApiCallError(f"cannot reach the Taskforge API at {self.where}: {exc}") from None
        if response.status_code < 300:
            return response.json()
        try:
            body = response.json()
        except ValueError:
            body = {}
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            raise ApiCallError(str(error["message"]), response.status_code, ours=True)
        message = body.get("message") if isinstance(body, dict) else None
        raise ApiCallError(f"the Taskforge API at {self.where} answered {response.status_code}:"
                           f" {message or response.text[:200] or response.reason_phrase}",
                           response.status_code)

    def close(self) -> None:
        self.http.close()

