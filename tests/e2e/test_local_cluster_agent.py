"""The local control plane and node agent themselves, which the e2e suite runs on by
default.

They stand in for a real cluster's nodes, so what they do beyond the Kubernetes API must be
right too: the pinned server version, a clear failure for an image the agent cannot run,
the benchmark's instant image, container restarts, surviving an apiserver restart, and the
``$(VAR)`` expansion of commands and env, as Kubernetes does it (checked without a
cluster). All but that last one are marked ``local_agent``: skipped on a foreign cluster.
Kubernetes behaviour on any cluster: test_local_cluster_kubernetes.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client as k8s_client
from localcluster.envvars import expand
from localcluster.images import BENCH_INSTANT_LOG
from localcluster.testing import ClusterUnderTest

from tests.e2e.cluster_kit import job, pod_of, wait_for


@pytest.mark.local_agent
def test_kubectl_version_shows_the_pinned_server(cluster: ClusterUnderTest) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.36.3"


@pytest.mark.local_agent
def test_unmapped_image_fails_the_pod_with_a_clear_reason(
    cluster: ClusterUnderTest, namespace: str
) -> None:
    image = "registry.example.com/acme/unknown:1.0"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "alien"},
           "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": image, "command": ["true"]}]}}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    core = k8s_client.CoreV1Api(cluster.api_client())

    def failed() -> k8s_client.V1PodStatus | None:
        status = core.read_namespaced_pod("alien", namespace).status
        return status if status and status.phase == "Failed" else None

    status = wait_for("pod alien to fail", failed, timeout=30)
    assert status.reason == "LocalAgentCannotRunImage"
    state = (status.container_statuses or [])[0].state
    assert state is not None and state.terminated is not None
    assert state.terminated.reason == "LocalAgentCannotRunImage"
    assert image in (state.terminated.message or "")
    assert image in (status.message or "")


@pytest.mark.local_agent
def test_bench_instant_image_finishes_without_a_process(
    cluster: ClusterUnderTest, namespace: str
) -> None:
    manifest = job("instant", ["does-not-exist"], image="taskforge.io/bench-instant")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    cluster.kubectl("wait", "-n", namespace, "--for=condition=complete", "job/instant",
                    "--timeout=30s")
    pod = pod_of(cluster, namespace, "instant")
    assert pod is not None and pod.status is not None
    state = (pod.status.container_statuses or [])[0].state
    assert state is not None and state.terminated is not None
    assert json.loads(state.terminated.message or "") == {
        "ok": True, "outputs": {}, "log": BENCH_INSTANT_LOG}
    # It "printed" an executor's log, the one its message carries, as the executor does.
    logs = cluster.kubectl("logs", "-n", namespace, pod.metadata.name, check=False)
    assert (logs.returncode, logs.stdout) == (0, BENCH_INSTANT_LOG), logs


@pytest.mark.local_agent
def test_on_failure_restarts_the_container(
    cluster: ClusterUnderTest, namespace: str, tmp_path: Path
) -> None:
    marker = tmp_path / "ran-once"
    script = (f"import os, sys\nif not os.path.exists({str(marker)!r}):\n"
              f"    open({str(marker)!r}, 'w').close(); sys.exit(3)\n")
    manifest = json.loads(job("flaky", ["python", "-c", script]))
    manifest["spec"]["backoffLimit"] = 2
    manifest["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    cluster.kubectl("wait", "-n", namespace, "--for=condition=complete", "job/flaky",
                    "--timeout=60s")
    pod = pod_of(cluster, namespace, "flaky")
    assert pod is not None and pod.status is not None
    (status,) = pod.status.container_statuses or []
    assert status.restart_count == 1
    assert status.last_state is not None and status.last_state.terminated is not None
    assert status.last_state.terminated.exit_code == 3


@pytest.mark.local_agent
def test_agent_survives_an_apiserver_restart(cluster: ClusterUnderTest, namespace: str) -> None:
    assert cluster.control_plane is not None
    cluster.control_plane.restart_apiserver()
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=job("after", ["python", "-c", "print('still here')"]))
    cluster.kubectl("wait", "-n", namespace, "--for=condition=complete", "job/after",
                    "--timeout=90s")


# -- $(VAR) expansion, as Kubernetes does it (no cluster needed) ----------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "a"),
        ("x$(A)y$(B)z", "xaybz"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$a"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("$A", "$A"),
        ("a$", "a$"),
        ("$()", "$()"),
        ("$(A)$(A)", "aa"),
    ],
)
def test_expand_matches_kubernetes(text: str, expected: str) -> None:
    assert expand(text, {"A": "a", "B": "b"}) == expected
