"""Waiting for an operator's admission webhook (its `local` mode) before creating runs.

The operator asks kopf to write the webhook configuration as it starts; until it is there, a
run created would carry no creator and any run naming a Secret would fail with Forbidden.
So the tests and the demo wait for it, as they wait for the operator's /healthz.
"""

from __future__ import annotations

import time
from pathlib import Path

from localcluster.kubeapi import ApiError, KubeAPI

API = "/apis/admissionregistration.k8s.io/v1"
HOOKS = {
    f"{API}/mutatingwebhookconfigurations/taskforge.io": (
        "record-run-creator", "record-workflow-writer"),
    f"{API}/validatingwebhookconfigurations/taskforge.io": ("validate-workflow", "validate-run"),
}


def wait_for_admission_webhook(kubeconfig: Path, port: int, timeout: float = 60.0) -> None:
    """Until both configurations point every Taskforge hook at `port`."""
    api = KubeAPI(kubeconfig, pool_size=1)
    deadline = time.monotonic() + timeout
    urls: list[str] = []
    while time.monotonic() < deadline:
        urls = []
        for path in HOOKS:
            try:
                config = api.get(path)
            except ApiError as exc:
                if not exc.not_found:
                    raise
                config = {}
            urls += [str((h.get("clientConfig") or {}).get("url", ""))
                     for h in config.get("webhooks") or []]
        hooks = [hook for group in HOOKS.values() for hook in group]
        if all(any(u.endswith(f":{port}/{hook}") for u in urls) for hook in hooks):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the admission webhook on port {port} was not configured: {urls}")
