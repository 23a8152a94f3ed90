"""The image `make image` built from the unchanged Dockerfile, checked by running it.

These replace the hand-written Dockerfile reader that once checked the same rules on the
text (tests/unit/dockerkit.py, retired): the real build proves every COPY source exists and the
allow-list context (.dockerignore) suffices; its OCI config shows the user, command, ports
and labels; a pod on the real node, in a namespace enforcing the `restricted` Pod Security
Standard, shows the image user, the read-only root and both entrypoints starting.
"""

from __future__ import annotations

import json
import time
import tomllib
from typing import Any

import pytest
import taskforge
from localcluster.nodeconfig import POD_CIDR
from localcluster.testing import ClusterUnderTest
from taskforge.adapters.jobs import NON_ROOT_UID
from taskforge.handlers.config import OperatorConfig
from taskforge_executor.contract import EXECUTOR_COMMAND

from tests.e2e.helm_kit import ROOT
from tests.e2e.node.nodekit import (
    IMAGE,
    image_config,
    pod_manifest,
    restricted_namespace,
    run_pod,
)

pytestmark = pytest.mark.real_node

PROBE = r"""
set -u
echo "uid=$(id -u) gid=$(id -g)"
touch /probe 2>/dev/null && echo "root=writable" || echo "root=read-only"
touch /tmp/probe && echo "tmp=writable"
python -c 'import importlib.util as u; print("pytest=" + str(u.find_spec("pytest") is not None))'
python -c 'import taskforge.handlers.main, taskforge_executor.__main__; print("imports=ok")'
command -v taskforge-operator >/dev/null && echo "operator=on-path"
test -e /src && echo "src=present" || echo "src=absent"
"""


def test_image_config_user_command_ports_labels() -> None:
    config = image_config()
    cfg: dict[str, Any] = config["config"]
    assert cfg["User"] == "65532:65532" and NON_ROOT_UID == 65532
    assert cfg["Cmd"] == ["taskforge-operator"]
    assert not cfg.get("Entrypoint"), "a pod's command must replace the CMD, unwrapped"
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["HOME"] == env["TMPDIR"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    defaults = OperatorConfig()
    assert set(cfg["ExposedPorts"]) == {f"{defaults.http_port}/tcp", "9443/tcp"}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version = taskforge.__version__  # pyproject's version is dynamic: this attribute
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.title"] == "taskforge"
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.licenses"] == pyproject["license"]


def test_image_runs_restricted_as_its_user_with_a_read_only_root(
    cluster: ClusterUnderTest,
) -> None:
    with restricted_namespace(cluster) as ns:
        pod = run_pod(cluster, ns, pod_manifest("probe", IMAGE, ["sh", "-c", PROBE]))
        assert pod["status"]["phase"] == "Succeeded", json.dumps(pod["status"], indent=1)
        logs = cluster.kubectl("logs", "probe", "-n", ns).stdout  # via the kubelet's TLS
    facts = dict(line.split("=", 1) for line in logs.split() if "=" in line)
    assert facts == {
        "uid": "65532", "gid": "65532", "root": "read-only", "tmp": "writable",
        "pytest": "False", "imports": "ok", "operator": "on-path", "src": "absent",
    }, logs
    prefix = POD_CIDR.rsplit(".", 2)[0]
    assert pod["status"]["podIP"].startswith(prefix + "."), pod["status"]["podIP"]


def test_executor_entrypoint_starts_and_rejects_a_missing_config(
    cluster: ClusterUnderTest,
) -> None:
    """The step command itself, with no step config: a permanent failure, said clearly."""
    with restricted_namespace(cluster) as ns:
        pod = run_pod(cluster, ns, pod_manifest("executor", IMAGE, [EXECUTOR_COMMAND]))
        logs = cluster.kubectl("logs", "executor", "-n", ns).stdout
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 78, (state, logs)  # EX_CONFIG: permanent, never retried
    assert "TASKFORGE_STEP is not set" in logs


def test_root_images_are_refused_by_run_as_non_root(cluster: ClusterUnderTest) -> None:
    """The stand-in base images run as root: the kubelet refuses them under runAsNonRoot."""
    with restricted_namespace(cluster) as ns:
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(
            pod_manifest("rooty", "busybox:1.36", ["true"])))
        deadline = time.monotonic() + 60
        reason = ""
        while time.monotonic() < deadline and reason != "CreateContainerConfigError":
            pod = json.loads(cluster.kubectl("get", "pod", "rooty", "-n", ns, "-o",
                                             "json").stdout)
            statuses = pod.get("status", {}).get("containerStatuses") or [{}]
            reason = (statuses[0].get("state", {}).get("waiting") or {}).get("reason", "")
            time.sleep(0.3)
    assert reason == "CreateContainerConfigError"
