"""The CLI through the API server's service proxy, as users reach the web API (taskforge dlq
and the run archive's reads): a user's kubeconfig with a ServiceAccount token, and a stand-in
for the chart's UI Service pointing at a web server on this machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from localcluster.testing import ClusterUnderTest


def user_kubeconfig(cluster: ClusterUnderTest, token: str, path: Path, namespace: str) -> Path:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    config["users"] = [{"name": "sa", "user": {"token": token}}]
    config["contexts"] = [{"name": "sa", "context": {"cluster": context["context"]["cluster"],
                                                     "user": "sa", "namespace": namespace}}]
    config["current-context"] = "sa"
    path.write_text(yaml.safe_dump(config))
    return path


def host_address() -> str | None:
    """This machine's first global IPv4 address: the API server proxies only to a pod's."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        return line.split()[3].split("/")[0]
    return None


def stand_in_service(cluster: ClusterUnderTest, namespace: str, address: str, port: int,
                     user: str, *, verbs: str = "get") -> str:
    """The chart's UI Service, stood in for by one without a selector whose Endpoints name a
    pod bound to no real node, its status carrying this machine's address: the API server
    proxies only to an address of the pod an endpoint names, and nothing runs that pod.
    `user` (a ServiceAccount) may use its proxy with `verbs` (e.g. "get, create, delete").
    NAMESPACE/NAME."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: web-stand-in}
spec:
  nodeName: no-such-node
  automountServiceAccountToken: false
  containers: [{name: web, image: stand-in}]
""")
    cluster.kubectl("patch", "pod", "web-stand-in", "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps(
                        {"status": {"podIP": address, "podIPs": [{"ip": address}]}}))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=f"""
apiVersion: v1
kind: Service
metadata: {{name: taskforge-ui}}
spec: {{ports: [{{name: http, port: 80, targetPort: {port}}}]}}
---
apiVersion: v1
kind: Endpoints
metadata: {{name: taskforge-ui}}
subsets:
- addresses: [{{ip: {address}, targetRef: {{kind: Pod, name: web-stand-in,
                                            namespace: {namespace}}}}}]
  ports: [{{name: http, port: {port}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: ui-proxy}}
rules: [{{apiGroups: [""], resources: [services/proxy], verbs: [{verbs}],
          resourceNames: [taskforge-ui, "taskforge-ui:http"]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: ui-proxy}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: ui-proxy}}
subjects: [{{kind: ServiceAccount, name: {user}, namespace: {namespace}}}]
""")
    return f"{namespace}/taskforge-ui"
