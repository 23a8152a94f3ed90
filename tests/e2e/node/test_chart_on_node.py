"""The Helm chart installed on the real node, the way a user installs it on kind.

`helm install` with the image `make image` built, into a namespace enforcing the
`restricted` Pod Security Standard: the operator Deployment becomes Available (its probes
pass in a real container), its admission webhook is reached through its Service (the
apiserver, a host process, goes through kube-proxy's rules to the pod), and workflows run
with every step in a real container of the executor image. Then cancel, `helm upgrade`
during a run, and `helm uninstall`. The chart is uninstalled whatever happens: while its
operator is not Ready, its webhook (failurePolicy Fail) refuses every run in the cluster.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from localcluster.testing import ClusterUnderTest

from tests.e2e.helm_kit import CHART, helm_binary, run_helm
from tests.e2e.node.nodekit import IMAGE, ctr, restricted_namespace
from tests.e2e.operator.conftest import Kube, step_phases
from tests.e2e.operator.stepkit import Reply, StubServer, step_of
from tests.e2e.webhook_flood import Flood

pytestmark = pytest.mark.real_node
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
REPO, TAG = IMAGE.rsplit(":", 1)


class Release:
    def __init__(self, cluster: ClusterUnderTest, helm: Path, name: str, namespace: str) -> None:
        self.cluster, self.helm, self.name, self.namespace = cluster, helm, name, namespace

    def helm_args(self, *extra: str) -> list[str]:
        return [self.name, str(CHART), "--namespace", self.namespace,
                "--set", f"image.repository={REPO}", "--set", f"image.tag={TAG}",
                "--set", "image.pullPolicy=Never", "--wait", "--timeout", "180s",
                # the roll test's webhook key sits in the release namespace
                "--set", f"webhook.secretNamespaces[0]={self.namespace}",
                # the web UI and API server (issue 17) runs beside the operator
                "--set", "ui.enabled=true", *extra]

    def selector(self, component: str = "operator") -> str:
        return f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component={component}"

    def operator_pods(self) -> list[dict[str, Any]]:
        out = self.cluster.kubectl("get", "pods", "-n", self.namespace, "-o", "json", "-l",
                                   self.selector()).stdout
        pods: list[dict[str, Any]] = json.loads(out)["items"]
        return pods

    def deployment(self) -> dict[str, Any]:
        out = self.cluster.kubectl("get", "deployment", "-n", self.namespace, "-o", "json",
                                   "-l", self.selector()).stdout
        (dep,) = json.loads(out)["items"]
        return dict(dep)

    def ready_pods(self) -> set[str]:
        return {p["metadata"]["name"] for p in self.operator_pods()
                if not p["metadata"].get("deletionTimestamp")
                and any(c["type"] == "Ready" and c["status"] == "True"
                        for c in p["status"].get("conditions", []))}


@pytest.fixture(scope="module")
def release(cluster: ClusterUnderTest) -> Iterator[Release]:
    helm = helm_binary()
    with restricted_namespace(cluster, "taskforge-system") as ns:
        rel = Release(cluster, helm, f"tf-{uuid.uuid4().hex[:6]}", ns)
        run_helm(helm, "install", *rel.helm_args(), "--kubeconfig", str(cluster.kubeconfig))
        try:
            yield rel
        finally:
            run_helm(helm, "uninstall", rel.name, "--namespace", ns, "--wait",
                     "--kubeconfig", str(cluster.kubeconfig), check=False)


@pytest.fixture
def kube(cluster: ClusterUnderTest, release: Release) -> Iterator[Kube]:
    with restricted_namespace(cluster, "e2e-chart") as ns:
        yield Kube(cluster.api_client(), ns, cluster.kubeconfig)


def test_install_leaves_the_operator_available_in_a_restricted_namespace(
    release: Release,
) -> None:
    dep = release.deployment()
    available = {c["type"]: c["status"] for c in dep["status"]["conditions"]}
    assert available.get("Available") == "True", dep["status"]
    pods = release.operator_pods()
    assert len(pods) == dep["spec"]["replicas"], pods
    for pod in pods:
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] and status["started"] and status["restartCount"] == 0, status
        # containerd may report the image by another of its names; the ID is what ran
        assert pod["spec"]["containers"][0]["image"] == IMAGE and "sha256:" in status["imageID"]
        assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def apply_example(cluster: ClusterUnderTest, kube: Kube, name: str,
                  edit: Any = None) -> None:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    if edit is not None:
        edit(docs)
    cluster.kubectl("apply", "-n", kube.namespace, "-f", "-", input=yaml.safe_dump_all(docs))


def assert_real_containers(cluster: ClusterUnderTest, kube: Kube, run: str) -> None:
    """Each step's pod ran the executor image in a container that containerd created."""
    pods = kube.core.list_namespaced_pod(kube.namespace,
                                         label_selector=f"taskforge.io/run={run}").items
    assert pods, f"no step pods of {run}"
    for pod in pods:
        (status,) = pod.status.container_statuses
        assert status.container_id.startswith("containerd://"), status
        assert pod.spec.containers[0].image == IMAGE and "sha256:" in status.image_id, status
        assert pod.spec.security_context.run_as_non_root is True


def test_hello_runs_with_every_step_in_a_real_container(
    cluster: ClusterUnderTest, kube: Kube
) -> None:
    apply_example(cluster, kube, "hello.yaml")
    run = kube.wait_run("hello-1", timeout=120)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert step_of(run, "count")["outputs"]["letters"] == len("Hello, Taskforge!")
    assert_real_containers(cluster, kube, "hello-1")


def test_http_step_in_a_pod_reaches_a_server_on_this_machine(
    cluster: ClusterUnderTest, kube: Kube
) -> None:
    stub = StubServer(cluster.host_ip)
    stub.start()
    try:
        stub.route("/json", Reply(200, {"slideshow": {"title": "Sample Slide Show"}}))
        stub.route("/post", Reply(200, echo=True))

        def local(docs: list[dict[str, Any]]) -> None:
            run = next(d for d in docs if d["kind"] == "WorkflowRun")
            run["spec"]["params"] = {"source": f"{stub.url}/json", "target": f"{stub.url}/post"}

        apply_example(cluster, kube, "http-fetch-and-post.yaml", local)
        run = kube.wait_run("http-fetch-and-post-1", timeout=120)
        assert run["status"]["phase"] == "Succeeded", run["status"]
        assert len(stub.requests("/post")) == 1
    finally:
        stub.stop()


def test_cancel_stops_the_container(cluster: ClusterUnderTest, kube: Kube) -> None:
    kube.workflow("long", {"steps": [
        {"name": "sleep", "script": {"language": "sh", "source": "sleep 300"}},
    ]})
    name = kube.start_run("long")
    deadline = time.monotonic() + 90
    container_id = ""
    while not container_id:
        assert time.monotonic() < deadline, "the step's container never ran"
        for pod in kube.core.list_namespaced_pod(
                kube.namespace, label_selector=f"taskforge.io/run={name}").items:
            for status in pod.status.container_statuses or []:
                if status.state.running is not None:
                    container_id = status.container_id.split("://", 1)[1]
        time.sleep(0.3)
    assert container_id in ctr(cluster, "tasks", "ls")
    kube.patch_run(name, {"spec": {"cancel": True}})
    run = kube.wait_run(name, timeout=60)
    assert run["status"]["phase"] == "Cancelled", run["status"]
    deadline = time.monotonic() + 60
    while container_id in ctr(cluster, "tasks", "ls"):
        assert time.monotonic() < deadline, "the cancelled step's container still runs"
        time.sleep(0.5)


def test_upgrade_rolls_the_operator_without_losing_a_run(
    cluster: ClusterUnderTest, kube: Kube, release: Release
) -> None:
    before = {p["metadata"]["uid"] for p in release.operator_pods()}
    kube.workflow("steady", {"steps": [
        {"name": "wait", "script": {"language": "sh", "source": "sleep 8"}},
        {"name": "after", "dependsOn": ["wait"], "log": {"message": "after {{ run.name }}"}},
    ]})
    name = kube.start_run("steady")
    kube.wait_run(name, until=lambda r: step_phases(r).get("wait") == "Running", timeout=90)
    run_helm(release.helm, "upgrade", *release.helm_args("--set", "logLevel=DEBUG"),
             "--kubeconfig", str(cluster.kubeconfig))
    # Every replica is replaced (the old ones may still be terminating for a moment).
    deadline = time.monotonic() + 60
    while before & {p["metadata"]["uid"] for p in release.operator_pods()}:
        assert time.monotonic() < deadline, "an old operator pod outlived the upgrade"
        time.sleep(0.5)
    for after in release.operator_pods():
        env = {e["name"]: e.get("value") for e in after["spec"]["containers"][0]["env"]}
        assert env["TASKFORGE_LOG_LEVEL"] == "DEBUG"
    run = kube.wait_run(name, timeout=120)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert {s: step_of(run, s)["attempts"] for s in ("wait", "after")} == {"wait": 1, "after": 1}
    assert len(kube.jobs(name)) == 2


def test_rollout_restart_during_a_webhook_flood_loses_no_delivery(
    cluster: ClusterUnderTest, release: Release
) -> None:
    """`kubectl rollout restart` of the real Deployment (maxSurge 1, maxUnavailable 0) while
    a sender posts signed deliveries through the Service (kube-proxy's rules, as a Service
    IP reaches the pods in a cluster) and retries a refused or failed one with the same
    delivery id. Every delivery is acknowledged and has exactly one run; afterwards two new
    pods are Ready and one of them holds the Lease."""
    ns, key = release.namespace, b"roll-key"
    kube = Kube(cluster.api_client(), ns, cluster.kubeconfig)
    kube.core.create_namespaced_secret(ns, client.V1Secret(
        metadata=client.V1ObjectMeta(name="roll-hook-key"), string_data={"key": key.decode()}))
    kube.workflow("roll", {
        # The step is skipped: the runs finish without pods, so the flood costs API calls only.
        "steps": [{"name": "noop", "log": {"message": "x"}, "when": "false"}],
        "history": {"successfulRuns": 1000, "failedRuns": 1000},  # keep every run to count
        "triggers": {"webhook": {"secretRef": {"name": "roll-hook-key", "key": "key"}}},
    })
    dep = release.deployment()
    name = dep["metadata"]["name"]
    svc = json.loads(cluster.kubectl("get", "service", name, "-n", ns, "-o", "json").stdout)
    port = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "http")
    before = {p["metadata"]["name"] for p in release.operator_pods()}
    flood = Flood(f"/hooks/{ns}/roll", key, senders=6, patience=90)
    flood.endpoints = [f"http://{svc['spec']['clusterIP']}:{port}"]
    time.sleep(1)  # both caches hold the Workflow (they are Ready, and it was applied first)
    sender = threading.Thread(target=flood.run, args=(0.25,))  # 4 a second, during the roll
    sender.start()
    try:
        time.sleep(2)
        rolling = time.monotonic()
        cluster.kubectl("rollout", "restart", f"deployment/{name}", "-n", ns)
        cluster.kubectl("rollout", "status", f"deployment/{name}", "-n", ns, "--timeout=240s",
                        timeout=260)
        # The old pods stop after the rollout's end (preStop, then SIGTERM): flood until gone.
        deadline = time.monotonic() + 90
        while before & {p["metadata"]["name"] for p in release.operator_pods()}:
            assert time.monotonic() < deadline, "an old operator pod outlived the roll"
            time.sleep(0.5)
        rolled = time.monotonic() - rolling
        time.sleep(2)
    finally:
        flood.stop.set()
        sender.join(180)
    assert not sender.is_alive()

    after = release.ready_pods()
    assert len(after) == dep["spec"]["replicas"] == 2 and not after & before, (before, after)
    coordination = client.CoordinationV1Api(kube.core.api_client)
    deadline = time.monotonic() + 30
    while (holder := coordination.read_namespaced_lease(name, ns).spec.holder_identity) \
            not in after:
        assert time.monotonic() < deadline, f"the Lease is held by {holder}, not a new pod"
        time.sleep(0.5)
    runs = [r for r in kube.custom.list_namespaced_custom_object(
        "taskforge.io", "v1alpha1", ns, "workflowruns")["items"]
        if r["spec"].get("workflowRef", {}).get("name") == "roll"]
    by_delivery = Counter((r["spec"].get("trigger") or {}).get("deliveryId") for r in runs)
    print(f"\nrollout restart during a webhook flood: {len(flood.acked)}/{flood.total}"
          f" deliveries acknowledged, {len(runs)} runs, {flood.retried} retries"
          f" {dict(flood.retries)}; roll {rolled:.1f} s (restart to old pods gone);"
          f" Lease held by {holder}")
    assert flood.total > 0 and len(flood.acked) == flood.total
    assert {r["metadata"]["name"] for r in runs} == set(flood.acked.values())
    assert by_delivery == Counter(set(flood.acked)), "a delivery made no run or two"
    last = flood.acked[f"flood-{flood.total - 1}"]
    assert kube.wait_run(last, timeout=120)["status"]["phase"] == "Succeeded"  # the leader acts


def test_helm_test_runs_a_one_step_workflow(cluster: ClusterUnderTest, release: Release) -> None:
    """`helm test`: the chart's hook pod runs `taskforge run --watch` on a one-step Workflow
    in the release namespace; it passes only when that run Succeeded."""
    proc = run_helm(release.helm, "test", release.name, "--namespace", release.namespace,
                    "--timeout", "180s", "--kubeconfig", str(cluster.kubeconfig))
    assert "Phase:          Succeeded" in proc.stdout, proc.stdout
    # The hook pod exits 0 only when the run Succeeded (`taskforge run --watch` exits 3
    # otherwise); the hook's Workflow, pod and ServiceAccount are deleted on success
    # (hook-delete-policy). The run and its step pod stay, like any run's.
    hook = f"{release.name}-taskforge-test"
    left = cluster.kubectl("get", "tfw,pods,serviceaccounts", "-n", release.namespace, "-o",
                           "name").stdout.split()
    assert not {f"workflow.taskforge.io/{hook}", f"pod/{hook}",
                f"serviceaccount/{hook}"} & set(left), left
    runs = json.loads(cluster.kubectl("get", "tfr", "-n", release.namespace, "-o",
                                      "json").stdout)["items"]
    assert [r["status"]["phase"] for r in runs
            if r["spec"].get("workflowRef", {}).get("name") == hook] == ["Succeeded"]


def test_ui_serves_its_api_through_the_service_proxy(
    cluster: ClusterUnderTest, release: Release, kube: Kube
) -> None:
    """The chart's UI Deployment (ui.enabled) in a real pod: Ready, and through the API
    server's service proxy (as `taskforge dlq` reaches it) it answers a ServiceAccount's token
    by RBAC: its own namespace's workflows, 401 without a token, 403 for another namespace."""
    out = cluster.kubectl("get", "deployment,service", "-n", release.namespace, "-o", "json",
                          "-l", release.selector("ui")).stdout
    objs = {o["kind"]: o for o in json.loads(out)["items"]}
    ready = {c["type"]: c["status"] for c in objs["Deployment"]["status"]["conditions"]}
    assert ready.get("Available") == "True", objs["Deployment"]["status"]
    service = objs["Service"]["metadata"]["name"]

    ns = kube.namespace
    cluster.kubectl("create", "serviceaccount", "ui-viewer", "-n", ns)
    cluster.kubectl("create", "role", "ui-viewer", "-n", ns, "--verb=get,list,watch",
                    "--resource=workflows.taskforge.io,workflowruns.taskforge.io")
    cluster.kubectl("create", "rolebinding", "ui-viewer", "-n", ns, "--role=ui-viewer",
                    f"--serviceaccount={ns}:ui-viewer")
    token = cluster.kubectl("create", "token", "ui-viewer", "-n", ns,
                            "--duration=10m").stdout.strip()
    kube.workflow("ui-probe", {"steps": [{"name": "s", "log": {"message": "hi"}}]})

    cfg = cluster.api_client().configuration
    proxy = (f"{cfg.host}/api/v1/namespaces/{release.namespace}/services/{service}:http"
             "/proxy/api/v1/namespaces")
    tls = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    tls.load_cert_chain(cfg.cert_file, cfg.key_file)  # the admin may use the proxy
    with httpx.Client(verify=tls, timeout=30) as http:
        mine = http.get(f"{proxy}/{ns}/workflows", headers={"X-Taskforge-Token": token})
        assert mine.status_code == 200, mine.text
        assert "ui-probe" in [w["name"] for w in mine.json()["items"]]
        anonymous = http.get(f"{proxy}/{ns}/workflows")
        assert anonymous.status_code == 401, anonymous.text
        other = http.get(f"{proxy}/{release.namespace}/workflows",
                         headers={"X-Taskforge-Token": token})
        assert other.status_code == 403, other.text


def test_uninstall_removes_everything(cluster: ClusterUnderTest, release: Release) -> None:
    """Last in this module: the fixture's own uninstall then finds nothing to do."""
    run_helm(release.helm, "uninstall", release.name, "--namespace", release.namespace,
             "--wait", "--kubeconfig", str(cluster.kubeconfig))
    selector = f"app.kubernetes.io/instance={release.name}"
    namespaced = cluster.kubectl(
        "get", "deployments,replicasets,services,secrets,serviceaccounts,roles,rolebindings,"
        "configmaps,networkpolicies,ingresses", "-n",
        release.namespace, "-l", selector, "-o", "name").stdout.split()
    cluster_wide = cluster.kubectl(
        "get", "clusterroles,clusterrolebindings,mutatingwebhookconfigurations,"
        "validatingwebhookconfigurations", "-l", selector, "-o", "name").stdout.split()
    assert namespaced == [] and cluster_wide == []
    deadline = time.monotonic() + 60
    while release.operator_pods():  # the garbage collector deletes it after its ReplicaSet
        assert time.monotonic() < deadline, "the operator pod outlived the uninstall"
        time.sleep(0.5)


