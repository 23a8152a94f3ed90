"""The leader's Lease requests get their own API Priority and Fairness flow (issue 14): a
FlowSchema and a PriorityLevelConfiguration from the chart, as kube-controller-manager's
leader election has. Rendered offline, then applied to the real API server, which must
classify the release's service account's Lease requests into that FlowSchema, and nothing
else of it or of anyone else's."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from localcluster.testing import ClusterUnderTest

from tests.e2e.helm_kit import CHART, by_kind, helm_binary, one, render, run_helm, to_yaml

pytestmark = pytest.mark.e2e

FLOW_KINDS = ("FlowSchema", "PriorityLevelConfiguration")


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def test_on_by_default_for_the_release_service_account_and_lease_verbs(helm: Path) -> None:
    manifests = render(helm, "--set", "tests.enabled=false", release="tf", namespace="ops")
    level = one(manifests, "PriorityLevelConfiguration")
    flow = one(manifests, "FlowSchema")
    assert level["metadata"]["name"] == flow["metadata"]["name"] == "tf-taskforge-leader-election"
    assert "namespace" not in flow["metadata"]  # cluster-scoped
    assert level["spec"]["type"] == "Limited"
    assert level["spec"]["limited"]["nominalConcurrencyShares"] == 5
    assert level["spec"]["limited"]["lendablePercent"] == 0
    spec = flow["spec"]
    assert spec["priorityLevelConfiguration"]["name"] == level["metadata"]["name"]
    assert spec["matchingPrecedence"] == 1500
    (rule,) = spec["rules"]
    sa = one(manifests, "ServiceAccount")["metadata"]["name"]
    assert rule["subjects"] == [{"kind": "ServiceAccount",
                                 "serviceAccount": {"name": sa, "namespace": "ops"}}]
    (resources,) = rule["resourceRules"]
    assert resources["apiGroups"] == ["coordination.k8s.io"]
    assert resources["resources"] == ["leases"]
    assert resources["namespaces"] == ["ops"]
    # Every verb the operator may use on its Lease (the Role's), and no other.
    role = one(manifests, "Role")
    role_verbs = {v for r in role["rules"] if r["resources"] == ["leases"] for v in r["verbs"]}
    assert set(resources["verbs"]) == role_verbs


@pytest.mark.parametrize("args", [
    ["--set", "leaderElection.priorityAndFairness.enabled=false"],
    ["--set", "replicas=1", "--set", "leaderElection.enabled=false"],
], ids=["off", "no-election"])
def test_off_or_without_election_renders_none(helm: Path, args: list[str]) -> None:
    manifests = render(helm, *args)
    for kind in FLOW_KINDS:
        assert not by_kind(manifests, kind)


def test_own_service_account_precedence_and_shares(helm: Path) -> None:
    manifests = render(helm, "--set", "serviceAccount.create=false",
                       "--set", "serviceAccount.name=platform-sa",
                       "--set", "leaderElection.priorityAndFairness.matchingPrecedence=600",
                       "--set", "leaderElection.priorityAndFairness.nominalConcurrencyShares=20")
    flow = one(manifests, "FlowSchema")
    assert flow["spec"]["rules"][0]["subjects"][0]["serviceAccount"]["name"] == "platform-sa"
    assert flow["spec"]["matchingPrecedence"] == 600
    level = one(manifests, "PriorityLevelConfiguration")
    assert level["spec"]["limited"]["nominalConcurrencyShares"] == 20


@pytest.mark.parametrize("bad", [
    "leaderElection.priorityAndFairness.matchingPrecedence=0",
    "leaderElection.priorityAndFairness.matchingPrecedence=10001",
    "leaderElection.priorityAndFairness.nominalConcurrencyShares=0",
    "leaderElection.priorityAndFairness.enabled=yes-please",
    "leaderElection.priorityAndFairness.queues=4",
])
def test_schema_refuses_bad_values(helm: Path, bad: str) -> None:
    proc = run_helm(helm, "template", "t", str(CHART), "--set", bad, check=False)
    assert proc.returncode != 0, f"{bad} was accepted"
    assert "schema" in proc.stderr.lower(), proc.stderr


# --- on the real API server ----------------------------------------------------------------


@pytest.fixture
def applied(helm: Path, cluster: ClusterUnderTest, namespace: str) -> Iterator[dict[str, str]]:
    """The chart's two flow-control objects for a release in `namespace` (a name of its own:
    they are cluster-scoped), applied; their uids by kind. Deleted afterwards."""
    release = f"apf-{uuid.uuid4().hex[:6]}"
    rendered = render(helm, "--set", "tests.enabled=false", release=release,
                      namespace=namespace)
    manifests = [m for m in rendered if m["kind"] in FLOW_KINDS]
    assert len(manifests) == 2
    names = [f"{m['kind'].lower()}/{m['metadata']['name']}" for m in manifests]
    try:
        cluster.kubectl("apply", "-f", "-", input=to_yaml(manifests))
        uids = {m["kind"]: cluster.kubectl("get", f"{m['kind'].lower()}/{m['metadata']['name']}",
                                           "-o", "jsonpath={.metadata.uid}").stdout
                for m in manifests}
        yield {**uids, "sa": one(rendered, "ServiceAccount")["metadata"]["name"]}
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "--wait=false", *names, check=False)


def flow_schema_of(cluster: ClusterUnderTest, path: str, user: str) -> str:
    """The uid of the FlowSchema the API server classified a GET of `path` by `user` into
    (impersonated; classification comes before authorization, so a 403 tells it too)."""
    with cluster.api_client() as api:
        method, url, headers, _, _ = api.param_serialize(
            "GET", path, header_params={"Impersonate-User": user}, auth_settings=["BearerToken"])
        resp = api.call_api(method, url, header_params=headers)  # any status: no exception
        resp.read()
        return str(resp.getheader("X-Kubernetes-PF-FlowSchema-UID") or "")


def test_the_api_server_classifies_only_the_lease_requests_into_it(
    cluster: ClusterUnderTest, namespace: str, applied: dict[str, str]
) -> None:
    ours = f"system:serviceaccount:{namespace}:{applied['sa']}"
    lease = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/x"
    deadline = time.monotonic() + 30  # the API server's flow-control config follows a watch
    while flow_schema_of(cluster, lease, ours) != applied["FlowSchema"]:
        assert time.monotonic() < deadline, "the Lease GET never matched the FlowSchema"
        time.sleep(0.5)
    others = [
        (f"/api/v1/namespaces/{namespace}/configmaps", ours),  # not a Lease
        ("/apis/coordination.k8s.io/v1/namespaces/default/leases/x", ours),  # not its namespace
        (lease, f"system:serviceaccount:{namespace}:default"),  # another service account
    ]
    for path, user in others:
        uid = flow_schema_of(cluster, path, user)
        assert uid and uid != applied["FlowSchema"], (path, user)
