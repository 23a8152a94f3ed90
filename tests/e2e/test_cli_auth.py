"""The CLI's kubeconfig handling against the real apiserver (lightkube, see cli/client.py):
the credentials kubectl users have besides client certificates (a bearer token, a token
file, an exec plugin), KUBECONFIG listing several files, and RBAC refusals as one line.

The tokens are real ServiceAccount tokens (TokenRequest, `kubectl create token`) for an
account that may read runs and workflows in one namespace and nothing else.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster.testing import ClusterUnderTest

from tests.e2e.cli_kit import CLI, Cli, install_crds, pipeline_cli

pytestmark = pytest.mark.e2e

READER_ROLE = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: taskforge-reader}
rules:
  - apiGroups: [taskforge.io]
    resources: [workflows, workflowruns]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: taskforge-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: taskforge-reader}
subjects:
  - {kind: ServiceAccount, name: reader}
"""


@pytest.fixture(scope="module")
def crds(cluster: ClusterUnderTest) -> ClusterUnderTest:
    return install_crds(cluster)


@pytest.fixture
def cli(crds: ClusterUnderTest, namespace: str) -> Iterator[Cli]:
    yield pipeline_cli(crds, namespace)


def _token(cli: Cli) -> str:
    cli.kubectl("create", "serviceaccount", "reader")
    cli.apply(READER_ROLE)
    return cli.kubectl("create", "token", "reader", "--duration=10m").strip()


def _kubeconfig(cli: Cli, user: dict[str, Any]) -> dict[str, Any]:
    """The cluster's kubeconfig with its admin certificate replaced by `user`."""
    config: dict[str, Any] = yaml.safe_load(cli.cluster.kubeconfig.read_text())
    config["users"] = [{"name": "reader", "user": user}]
    for context in config["contexts"]:
        context["context"]["user"] = "reader"
        context["context"]["namespace"] = cli.namespace
    return config


def _taskforge(*args: str, kubeconfig: Path | str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "COLUMNS": "200"}
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=60,
                          check=False, env=env)


def test_token_token_file_and_exec_plugin_users(cli: Cli, tmp_path: Path) -> None:
    run = cli.new_run()
    token = _token(cli)
    (tmp_path / "token").write_text(token)
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, sys\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1',"
        " 'kind': 'ExecCredential', 'status': {'token': sys.argv[1]}}))\n")
    users = {
        "token": {"token": token},
        "token-file": {"tokenFile": str(tmp_path / "token")},
        "exec": {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                          "command": sys.executable, "args": [str(plugin), token]}},
    }
    for kind, user in users.items():
        path = tmp_path / f"{kind}.kubeconfig"
        path.write_text(yaml.safe_dump(_kubeconfig(cli, user)))
        listed = _taskforge("list", "runs", "-o", "name", kubeconfig=path)
        assert (listed.returncode, listed.stdout) == (0, f"workflowrun.taskforge.io/{run}\n"), \
            (kind, listed.stderr)
        got = _taskforge("get", run, "-o", "json", kubeconfig=path)
        assert got.returncode == 0 and json.loads(got.stdout)["metadata"]["name"] == run, kind

        # the account may read, not write: a refusal is one line naming it, exit 1
        refused = _taskforge("cancel", run, kubeconfig=path)
        assert refused.returncode == 1, (kind, refused.stdout)
        assert refused.stderr.startswith("error: not allowed: "), refused.stderr
        assert f"system:serviceaccount:{cli.namespace}:reader" in refused.stderr
        assert len(refused.stderr.splitlines()) == 1

    bad = tmp_path / "bad-token.kubeconfig"
    bad.write_text(yaml.safe_dump(_kubeconfig(cli, {"token": "not-a-token"})))
    unauthorized = _taskforge("list", kubeconfig=bad)
    assert unauthorized.returncode == 1
    assert unauthorized.stderr.startswith("error: not allowed: "), unauthorized.stderr
    assert "Traceback" not in unauthorized.stderr


def test_kubeconfig_variable_merges_files_as_kubectl(cli: Cli, tmp_path: Path) -> None:
    """KUBECONFIG=a:b: the first file to name a context, cluster or user wins, and so does
    the first current-context; a relative certificate path is read next to its file."""
    run = cli.new_run()
    full: dict[str, Any] = yaml.safe_load(cli.cluster.kubeconfig.read_text())
    cluster = full["clusters"][0]
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.crt").write_bytes(
        base64.b64decode(cluster["cluster"].pop("certificate-authority-data")))
    cluster["cluster"]["certificate-authority"] = "ca.crt"  # relative to certs/b.kubeconfig
    first = {
        "apiVersion": "v1", "kind": "Config", "current-context": "mine",
        "contexts": [{"name": "mine", "context": {"cluster": cluster["name"], "user": "admin",
                                                  "namespace": cli.namespace}}],
        "users": full["users"],
        "clusters": [],
    }
    second = {
        "apiVersion": "v1", "kind": "Config", "current-context": "elsewhere",
        "contexts": [{"name": "mine", "context": {"cluster": "nowhere", "user": "admin"}}],
        "clusters": [cluster],
        "users": [],
    }
    (tmp_path / "a.kubeconfig").write_text(yaml.safe_dump(first))
    (tmp_path / "certs" / "b.kubeconfig").write_text(yaml.safe_dump(second))
    paths = os.pathsep.join([str(tmp_path / "a.kubeconfig"), str(tmp_path / "missing"),
                             str(tmp_path / "certs" / "b.kubeconfig")])
    listed = _taskforge("list", "runs", "-o", "name", kubeconfig=paths)
    assert (listed.returncode, listed.stdout) == (0, f"workflowrun.taskforge.io/{run}\n"), \
        listed.stderr

    unknown = _taskforge("--context", "nope", "list", kubeconfig=paths)
    assert unknown.returncode == 1
    assert unknown.stderr == "error: kubeconfig: Context 'nope' not found\n"
