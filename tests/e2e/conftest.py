"""Fixtures for end-to-end tests: a real cluster, Redis, a fresh namespace per test.

The cluster is the local one (``hack/localcluster``: real kube-apiserver, etcd and
controller manager, plus the local node agent), started once per session in a
temporary directory. Set ``TASKFORGE_E2E_KUBECONFIG`` to run the same tests
against an existing cluster instead (e.g. kind on a laptop, with the executor
image loaded); tests marked ``local_agent`` are then skipped, because they rely
on the agent (host processes, host files, the control plane's binaries).
Set ``REDIS_URL`` to use an existing Redis instead of starting ``redis-server``.

``--node=kubelet`` (``TASKFORGE_E2E_NODE=kubelet``) starts the local cluster with a real
kubelet + containerd node instead of the agent, and runs the tests marked ``real_node`` or
``both_nodes`` (the images come from ``make image``). The default, the agent, runs all
the others and the ``both_nodes`` ones.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from localcluster import LocalCluster, RedisServer, default_bin_dir
from localcluster.testing import ClusterUnderTest, ExternalRedis

# The helper modules of the e2e tests assert too: rewrite their asserts as pytest does the
# tests' (detailed failure messages). Must run before they are imported.
pytest.register_assert_rewrite(
    "tests.e2e.cli_kit", "tests.e2e.helm_kit", "tests.e2e.operator.stepkit"
)

FOREIGN_KUBECONFIG_ENV = "TASKFORGE_E2E_KUBECONFIG"
E2E_DIR = Path(__file__).resolve().parent


def _kubectl_dir() -> Path:
    found = shutil.which("kubectl")
    return Path(found).parent if found else default_bin_dir()


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterUnderTest]:
    foreign = os.environ.get(FOREIGN_KUBECONFIG_ENV)
    if foreign:
        yield ClusterUnderTest(kubeconfig=Path(foreign), bin_dir=_kubectl_dir())
        return
    node = str(request.config.getoption("--node"))
    local = LocalCluster(tmp_path_factory.mktemp("cluster"), with_redis=False, node=node)
    local.start(timeout=240.0 if node == "kubelet" else 120.0)
    try:
        yield ClusterUnderTest(
            kubeconfig=local.kubeconfig, bin_dir=local.bin_dir,
            control_plane=local.control_plane, local=local,
        )
    finally:
        local.stop()
    if local.real_node is not None:
        # `make cluster-down` promises a clean machine: no container, mount, veth or rule.
        left = local.real_node.leftovers()
        assert not left, "the real node left behind:\n" + "\n".join(left)


@pytest.fixture(scope="session")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisServer | ExternalRedis]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield ExternalRedis(url)
        return
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        pytest.skip("redis-server is not installed and REDIS_URL is not set")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def namespace(cluster: ClusterUnderTest) -> Iterator[str]:
    """A fresh ``e2e-<random>`` namespace, deleted (without waiting) afterwards.

    Waits for its ``default`` ServiceAccount: until the controller manager has
    made it, the ServiceAccount admission plugin rejects every pod.
    """
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    deadline = time.monotonic() + 30
    while cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no default ServiceAccount in namespace {name}")
        time.sleep(0.1)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found",
                        check=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/e2e is ``e2e``; ``local_agent`` ones skip on a foreign cluster.

    The node decides which run at all: ``real_node`` tests only with ``--node=kubelet``,
    which in turn runs only them and the ``both_nodes`` ones. The others are deselected,
    not skipped, so the real-node suite reports nothing skipped.
    """
    foreign = bool(os.environ.get(FOREIGN_KUBECONFIG_ENV))
    real = config.getoption("--node") == "kubelet" and not foreign
    skip = pytest.mark.skip(reason=f"needs the local node agent ({FOREIGN_KUBECONFIG_ENV} is set)")
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if E2E_DIR not in Path(str(item.path)).resolve().parents:
            (dropped if real else keep).append(item)
            continue
        item.add_marker(pytest.mark.e2e)
        on_real = item.get_closest_marker("real_node") is not None
        on_both = item.get_closest_marker("both_nodes") is not None
        # real_node tests read the local node's containerd and image archives: never foreign
        if (real and not (on_real or on_both)) or (not real and on_real):
            dropped.append(item)
            continue
        if foreign and item.get_closest_marker("local_agent") is not None:
            item.add_marker(skip)
        keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
