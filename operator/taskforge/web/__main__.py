"""`python -m taskforge.web` / `taskforge-ui`: the server of the chart's UI Deployment, and
with `--local` the server `taskforge ui` starts on a laptop.

Cluster mode, configured by the environment: TASKFORGE_UI_HOST (default 0.0.0.0),
TASKFORGE_UI_PORT (8080), TASKFORGE_UI_COOKIE_SECURE (true behind TLS),
TASKFORGE_UI_VIEWER_QUEUE (256 messages) and TASKFORGE_UI_VIEWER_QUEUE_BYTES (16 MiB): how far
a live viewer may lag before it is dropped, REDIS_URL and the TASKFORGE_REDIS_* variables (dead
letters, read as the operator reads them), TASKFORGE_ARCHIVE_URL (the run archive, the
operator's variable; unset: the archive endpoints answer 501), and the in-cluster
ServiceAccount (else KUBECONFIG) for TokenReview, SubjectAccessReview and reads.

Local mode (`--local [--kubeconfig F] [--context C] [--port N]`): 127.0.0.1, the kubeconfig's
identity for everything, a random secret in the printed URL. Dead letters need REDIS_URL
here (an admin's path; users go through the cluster's server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys

from aiohttp import web

from taskforge.web.app import create_app, redis_from_env
from taskforge.web.auth import Access, LocalAccess
from taskforge.web.kubeapi import KubeApi, load_credentials
from taskforge.web.state import WebSettings


def settings_from_env() -> WebSettings:
    return WebSettings(
        mode="cluster",
        host=os.environ.get("TASKFORGE_UI_HOST", "0.0.0.0"),  # a pod listens on its address
        port=int(os.environ.get("TASKFORGE_UI_PORT", "8080")),
        viewer_queue=int(os.environ.get("TASKFORGE_UI_VIEWER_QUEUE", "256")),
        viewer_queue_bytes=int(os.environ.get("TASKFORGE_UI_VIEWER_QUEUE_BYTES", str(16 << 20))),
        cookie_secure=os.environ.get("TASKFORGE_UI_COOKIE_SECURE", "").lower()
        in ("1", "true", "yes"),
    )


async def serve_local(kubeconfig: str | None, context: str | None, port: int) -> None:
    """Serve until SIGINT/SIGTERM; print the login URL once listening."""
    kube = KubeApi(load_credentials(kubeconfig, context, in_cluster=False))
    secret = os.environ.get("TASKFORGE_UI_TOKEN") or secrets.token_urlsafe(24)
    access = LocalAccess(kube, secret)
    await access.who()
    settings = WebSettings(mode="local", host="127.0.0.1", port=port)
    app = create_app(settings, kube, access, redis_from_env())
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server  # aiohttp has no public accessor for the bound port (port 0)
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    base = f"http://127.0.0.1:{bound}"
    print(f"Taskforge UI for {access.user.name}: {base}/api/v1/login?token={secret}&next=/",
          flush=True)
    print(f"export TASKFORGE_UI_SERVER={base} TASKFORGE_UI_TOKEN={secret}"
          "  # for taskforge dlq and the run archive's reads (--server)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="taskforge-ui", description=__doc__.split("\n")[0])
    parser.add_argument("--local", action="store_true",
                        help="act with the kubeconfig's identity on 127.0.0.1")
    parser.add_argument("--kubeconfig")
    parser.add_argument("--context")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("TASKFORGE_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if args.local:
        asyncio.run(serve_local(args.kubeconfig, args.context,
                                args.port if args.port is not None else 8765))
        return
    settings = settings_from_env()
    if args.port is not None:
        settings = WebSettings(**{**settings.__dict__, "port": args.port})
    kube = KubeApi(load_credentials(args.kubeconfig, args.context))
    app = create_app(settings, kube, Access(kube), redis_from_env())
    # Open SSE streams and idle keep-alive connections would hold a stop for the whole
    # timeout; the chart's grace period is 30 s, in-flight API calls take well under 2 s.
    web.run_app(app, host=settings.host, port=settings.port, print=None,
                shutdown_timeout=2.0, access_log=None)


if __name__ == "__main__":
    main()
