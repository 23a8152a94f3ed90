"""`taskforge-operator`: run the kopf operator (in a cluster or against a kubeconfig)."""

from __future__ import annotations

import logging
import os

import kopf

from taskforge import logs
from taskforge.handlers import memdump, registration
from taskforge.handlers.config import RETIRED_PORT_VARIABLES, OperatorConfig

log = logging.getLogger("taskforge.operator")


def main() -> None:
    level = os.environ.get("TASKFORGE_LOG_LEVEL", "INFO")
    logs.setup("text", level)  # until the settings are read (a bad one is logged as text)
    config = OperatorConfig.from_env()
    logs.setup(config.log_format, level)
    memdump.install_from_env()  # TASKFORGE_MEMDUMP only (a bench tool): nothing otherwise
    for name in RETIRED_PORT_VARIABLES:
        if name in os.environ:
            log.warning("%s is no longer read: one server serves /metrics, /healthz, /readyz"
                        " and /hooks on TASKFORGE_HTTP_PORT (%d)", name, config.http_port)
    assert registration.startup is not None  # importing the module registers the handlers
    # No liveness_endpoint: kopf's own health server is not started; /healthz and /readyz are
    # on the operator's one HTTP server (handlers/endpoints.py).
    kopf.run(
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
    )


if __name__ == "__main__":
    main()
