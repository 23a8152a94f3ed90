"""The chart's high-availability pieces, rendered offline (issue 15 item 1): two replicas with
leader election, a RollingUpdate that keeps one Ready, a PodDisruptionBudget, a spread over
nodes, and a Role for exactly the one Lease. With a real API server: tests/e2e/ha/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.helm_kit import by_kind, container_env, helm_binary, one, render, run_helm

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def test_defaults_two_replicas_a_pdb_a_spread_and_a_lease_role(helm: Path) -> None:
    # Without the `helm test` hook, whose Role and RoleBinding are its own pod's.
    manifests = render(helm, "--set", "tests.enabled=false", release="tf", namespace="ops")
    deployment = one(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["topologySpreadConstraints"] == [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": labels}}]
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["metadata"]["namespace"] == "ops"
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": labels}}

    env = container_env(deployment)
    assert (env["TASKFORGE_LEASE_NAME"], env["TASKFORGE_LEASE_NAMESPACE"]) == ("tf-taskforge",
                                                                               "ops")
    assert env["TASKFORGE_LEASE_IDENTITY"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    role = one(manifests, "Role")
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["tf-taskforge"], "verbs": ["get", "update"]}]
    binding = one(manifests, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["namespace"] == "ops"


def test_one_replica_without_election_recreates_and_has_no_pdb(helm: Path) -> None:
    manifests = render(helm, "--set", "replicas=1", "--set", "leaderElection.enabled=false",
                       "--set", "tests.enabled=false")
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "topologySpreadConstraints" not in deployment["spec"]["template"]["spec"]
    assert not by_kind(manifests, "PodDisruptionBudget")
    assert not by_kind(manifests, "Role")
    assert container_env(deployment)["TASKFORGE_LEADER_ELECTION"] == "false"


def test_a_prestop_sleep_keeps_a_stopping_replica_serving(helm: Path) -> None:
    """The grace period covers the delay and the clean stop after it; 0 drops the hook."""
    pod = one(render(helm, "--set", "tests.enabled=false"),
              "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert pod["terminationGracePeriodSeconds"] == 35
    pod = one(render(helm, "--set", "tests.enabled=false", "--set", "shutdownDelaySeconds=0"),
              "Deployment")["spec"]["template"]["spec"]
    assert "lifecycle" not in pod["containers"][0]
    assert pod["terminationGracePeriodSeconds"] == 30


def test_own_spread_and_pdb_values(helm: Path) -> None:
    spread = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
              "whenUnsatisfiable": "DoNotSchedule",
              "labelSelector": {"matchLabels": {"app": "x"}}}
    manifests = render(helm, "--set-json", f"topologySpreadConstraints=[{_json(spread)}]",
                       "--set", "podDisruptionBudget.minAvailable=50%", "--set", "replicas=3")
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"] == [spread]
    assert one(manifests, "PodDisruptionBudget")["spec"]["minAvailable"] == "50%"


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "leaderElection.enabled=false"], "replicas > 1 needs leaderElection.enabled"),
    (["--set", "leaderElection.renewDeadlineSeconds=10"], "leaseDurationSeconds > renewDeadline"),
    (["--set", "leaderElection.retryPeriodSeconds=6"], "1.2 * retryPeriodSeconds"),
    (["--set", "leaderElection.leaseDuration=5"], "additional properties 'leaseDuration'"),
    (["--set", "podDisruptionBudget.maxUnavailable=1"], "'maxUnavailable' not allowed"),
    (["--set", "updateStrategy.type=Replace"], "updateStrategy/type"),
    (["--set", "shutdownDelaySeconds=-1"], "shutdownDelaySeconds"),
])
def test_bad_values_are_refused(helm: Path, args: list[str], message: str) -> None:
    proc = run_helm(helm, "template", "t", str(Path(__file__).parents[2] / "charts/taskforge"),
                    *args, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def _json(value: object) -> str:
    import json  # noqa: PLC0415

    return json.dumps(value)
