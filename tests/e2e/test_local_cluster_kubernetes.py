"""The cluster the e2e suite runs on behaves like Kubernetes where Taskforge relies on it.

The operator's steps are Jobs: it reads their results from termination messages, gives them
env from Secrets, ConfigMaps and fields, enforces timeouts with deadlines, deletes them on
cancel, shows their logs, and installs CRDs. If the local cluster got one of these wrong,
the e2e tests of the operator would pass or fail for the wrong reason. These tests hold on
any cluster; the one marked ``local_agent`` also checks that a deleted Job's host process
ends. The local control plane and node agent themselves: test_local_cluster_agent.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s_client
from localcluster.testing import ClusterUnderTest

from tests.e2e.cluster_kit import (
    BUSYBOX_IMAGE,
    PYTHON_IMAGE,
    job,
    job_condition,
    pid_alive,
    pod_of,
    wait_for,
)


def test_python_job_completes_with_termination_message(
    cluster: ClusterUnderTest, namespace: str
) -> None:
    script = (
        "import json, os, sys\n"
        "print('hello from', os.environ['POD_NAME'], sys.argv[1:])\n"
        "with open('/dev/termination-log', 'w') as f:\n"
        "    json.dump({'ok': True, 'outputs': {'answer': 42}}, f)\n"
    )
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    manifest = job("hello", ["python", "-c", script, "$(POD_NAME)"], env=env)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    cluster.kubectl("wait", "-n", namespace, "--for=condition=complete", "job/hello",
                    "--timeout=60s")
    pod = pod_of(cluster, namespace, "hello")
    assert pod is not None and pod.status is not None
    assert pod.status.phase == "Succeeded"
    (status,) = pod.status.container_statuses or []
    terminated = status.state.terminated if status.state else None
    assert terminated is not None
    assert terminated.exit_code == 0
    assert terminated.reason == "Completed"
    assert json.loads(terminated.message or "") == {"ok": True, "outputs": {"answer": 42}}


def test_each_container_has_its_own_termination_message(
    cluster: ClusterUnderTest, namespace: str
) -> None:
    def writer(text: str) -> list[str]:
        return ["python", "-c", f"open('/dev/termination-log', 'w').write({text!r})"]

    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two"},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "init", "image": PYTHON_IMAGE, "command": writer("i")}],
            "containers": [{"name": "main", "image": PYTHON_IMAGE, "command": writer("m")}],
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    core = k8s_client.CoreV1Api(cluster.api_client())

    def finished() -> k8s_client.V1Pod | None:
        p = core.read_namespaced_pod("two", namespace)
        return p if p.status and p.status.phase in ("Succeeded", "Failed") else None

    done = wait_for("pod two to finish", finished)
    assert done.status is not None
    assert done.status.phase == "Succeeded"
    init = (done.status.init_container_statuses or [])[0].state
    main = (done.status.container_statuses or [])[0].state
    assert init is not None and init.terminated is not None
    assert main is not None and main.terminated is not None
    assert (init.terminated.message, main.terminated.message) == ("i", "m")


def test_env_from_secret_configmap_and_fields(cluster: ClusterUnderTest, namespace: str) -> None:
    cluster.kubectl("create", "secret", "generic", "creds", "-n", namespace,
                    "--from-literal=token=s3cret")
    cluster.kubectl("create", "configmap", "settings", "-n", namespace,
                    "--from-literal=mode=fast")
    env: list[dict[str, Any]] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "COMBINED", "value": "$(MODE)-$(NS)-$$(MODE)-$(UNDEFINED)"},
    ]
    script = ("import json, os; open('/dev/termination-log', 'w').write(json.dumps("
              "{k: os.environ.get(k) for k in ['TOKEN', 'MODE', 'NS', 'NODE', 'COMBINED']}))")
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=job("envs", ["python", "-c", script], env=env))
    cluster.kubectl("wait", "-n", namespace, "--for=condition=complete", "job/envs",
                    "--timeout=60s")
    pod = pod_of(cluster, namespace, "envs")
    assert pod is not None and pod.status is not None and pod.spec is not None
    state = (pod.status.container_statuses or [])[0].state
    assert state is not None and state.terminated is not None
    got = json.loads(state.terminated.message or "")
    assert got == {
        "TOKEN": "s3cret", "MODE": "fast", "NS": namespace, "NODE": pod.spec.node_name,
        "COMBINED": f"fast-{namespace}-$(MODE)-$(UNDEFINED)",
    }


def test_active_deadline_fails_the_job(cluster: ClusterUnderTest, namespace: str) -> None:
    manifest = job("slow", ["python", "-c", "import time; time.sleep(600)"], deadline=3)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    cond = wait_for("job slow to fail",
                    lambda: job_condition(cluster, namespace, "slow", "Failed"), timeout=90)
    assert cond.reason == "DeadlineExceeded"


def test_pod_active_deadline_fails_the_pod(cluster: ClusterUnderTest, namespace: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "overdue"},
           "spec": {"restartPolicy": "Never", "activeDeadlineSeconds": 2,
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{"name": "c", "image": BUSYBOX_IMAGE,
                                    "command": ["sleep", "600"]}]}}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    core = k8s_client.CoreV1Api(cluster.api_client())

    def failed() -> k8s_client.V1PodStatus | None:
        status = core.read_namespaced_pod("overdue", namespace).status
        return status if status and status.phase == "Failed" else None

    status = wait_for("pod overdue to fail", failed, timeout=60)
    assert status.reason == "DeadlineExceeded"


@pytest.mark.local_agent
@pytest.mark.parametrize("propagation", ["Foreground", "Background"])
def test_deleting_a_job_ends_its_process(
    cluster: ClusterUnderTest, namespace: str, tmp_path: Path, propagation: str
) -> None:
    pid_file = tmp_path / "pid"
    script = ("import os, time; open(os.environ['PID_FILE'], 'w').write(str(os.getpid())); "
              "time.sleep(600)")
    manifest = job("victim", ["python", "-c", script],
                   env=[{"name": "PID_FILE", "value": str(pid_file)}])
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    wait_for("the pod to write its pid", lambda: pid_file.exists() and pid_file.read_text())
    pid = int(pid_file.read_text())
    assert pid_alive(pid)
    batch = k8s_client.BatchV1Api(cluster.api_client())
    batch.delete_namespaced_job("victim", namespace, propagation_policy=propagation)
    wait_for(f"process {pid} to end", lambda: not pid_alive(pid), timeout=30)
    core = k8s_client.CoreV1Api(cluster.api_client())
    wait_for("the job's pods to be deleted", lambda: not core.list_namespaced_pod(
        namespace, label_selector="job-name=victim").items, timeout=30)


def test_namespace_with_pods_is_deleted_completely(
    cluster: ClusterUnderTest, namespace: str
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=job("sleeper", ["sleep", "600"], image=BUSYBOX_IMAGE))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"},
           "spec": {"containers": [{"name": "c", "image": BUSYBOX_IMAGE,
                                    "command": ["sleep", "600"]}]}}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    wait_for("the job's pod", lambda: pod_of(cluster, namespace, "sleeper"))
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod", "--all",
                    "--timeout=60s")
    cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=90s",
                    timeout=120)
    result = cluster.kubectl("get", "namespace", namespace, check=False)
    assert "NotFound" in result.stderr


def test_kubectl_logs_shows_pod_output(cluster: ClusterUnderTest, namespace: str) -> None:
    script = "for i in range(3): print(f'line {i}', flush=True)"
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=job("talker", ["python", "-c", script]))
    cluster.kubectl("wait", "-n", namespace, "--for=condition=complete", "job/talker",
                    "--timeout=60s")
    logs = cluster.kubectl("logs", "-n", namespace, "job/talker").stdout
    assert logs.splitlines() == ["line 0", "line 1", "line 2"]
    tail = cluster.kubectl("logs", "-n", namespace, "job/talker", "--tail=1").stdout
    assert tail.splitlines() == ["line 2"]
    stamped = cluster.kubectl("logs", "-n", namespace, "job/talker", "--timestamps").stdout
    first_stamp, _, text = stamped.splitlines()[0].partition(" ")
    assert text == "line 0" and first_stamp.endswith("Z")


def test_kubectl_logs_follow_streams_until_exit(
    cluster: ClusterUnderTest, namespace: str
) -> None:
    script = "import time\nfor i in range(3):\n    print(f'tick {i}', flush=True); time.sleep(1)"
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=job("ticker", ["python", "-u", "-c", script]))
    # the pod must exist first: `kubectl wait -l` fails when nothing matches yet
    pod = wait_for("the job's pod", lambda: pod_of(cluster, namespace, "ticker"))
    assert pod.metadata is not None and pod.metadata.name
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", f"pod/{pod.metadata.name}",
                    "--timeout=60s")
    followed = cluster.kubectl("logs", "-n", namespace, "job/ticker", "-f", timeout=60).stdout
    assert followed.splitlines() == ["tick 0", "tick 1", "tick 2"]


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.e2e.taskforge.io}
spec:
  group: e2e.taskforge.io
  names: {kind: Gadget, listKind: GadgetList, plural: gadgets, singular: gadget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
"""


def test_crd_applies_and_lists_objects(cluster: ClusterUnderTest, namespace: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=CRD)
    try:
        cluster.kubectl("wait", "--for=condition=established", "--timeout=60s",
                        "crd/gadgets.e2e.taskforge.io")
        for name, size in (("small", 1), ("large", 9)):
            gadget = {"apiVersion": "e2e.taskforge.io/v1", "kind": "Gadget",
                      "metadata": {"name": name}, "spec": {"size": size}}
            cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(gadget))
        listed = cluster.kubectl("get", "gadgets", "-n", namespace, "-o", "name").stdout
        assert sorted(listed.split()) == ["gadget.e2e.taskforge.io/large",
                                          "gadget.e2e.taskforge.io/small"]
        bad = {"apiVersion": "e2e.taskforge.io/v1", "kind": "Gadget",
               "metadata": {"name": "bad"}, "spec": {"size": 0}}
        rejected = cluster.kubectl("apply", "-n", namespace, "-f", "-",
                                   input=json.dumps(bad), check=False)
        assert rejected.returncode != 0 and "spec.size" in rejected.stderr
    finally:
        cluster.kubectl("delete", "crd", "gadgets.e2e.taskforge.io", "--wait=false",
                        check=False)
