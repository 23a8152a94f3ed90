"""`taskforge-operator`: run the kopf operator (in a cluster or against a kubeconfig)."""

from __future__ import annotations

import logging
import os
import sys

import kopf

from taskforge.handlers import registration
from taskforge.handlers.config import OperatorConfig


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("TASKFORGE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)-7s %(name)s %(message)s",
        stream=sys.stderr,
    )
    config = OperatorConfig.from_env()
    assert registration.startup is not None  # importing the module registers the handlers
    liveness = f"http://0.0.0.0:{config.health_port}/healthz" if config.health_port else None
    kopf.run(
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=liveness,
    )


if __name__ == "__main__":
    main()
