"""The whole local cluster: control plane + a node + Redis, as one object.

The node is the agent (``node="agent"``, the fast default: host processes stand in for
containers) or a real one (``node="kubelet"``: containerd, runc, CNI, kubelet, kube-proxy
and kube-scheduler, see realnode.py).

``with LocalCluster(tmp) as cluster:`` is what the e2e fixtures and the
benchmarks use; ``python -m localcluster up`` wraps the same object in a
supervisor process for interactive work.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from localcluster.certs import ClusterCerts
from localcluster.controlplane import ALL_DEFAULT_CONTROLLERS, DEFAULT_CONTROLLERS, ControlPlane
from localcluster.nodeconfig import NODE_IP
from localcluster.process import ManagedProcess
from localcluster.realnode import RealNode
from localcluster.redis_server import RedisServer

log = logging.getLogger(__name__)
HACK_DIR = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = HACK_DIR / "build-bins.sh"
NODE_MODES = ("agent", "kubelet")


def default_bin_dir() -> Path:
    """``$TASKFORGE_BIN_DIR``, else what hack/build-bins.sh prints last (instant when cached)."""
    if os.environ.get("TASKFORGE_BIN_DIR"):
        return Path(os.environ["TASKFORGE_BIN_DIR"])
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(result.stdout.strip().splitlines()[-1])


class AgentProcess:
    """``python -m localcluster agent`` as a child of the launcher."""

    def __init__(
        self,
        workdir: Path,
        kubeconfig: Path,
        certs: ClusterCerts,
        node_name: str = "local-node",
        image_config: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.state_dir = workdir / "agent"
        self.ready_file = self.state_dir / "ready"
        argv = [
            sys.executable, "-m", "localcluster", "agent",
            "--kubeconfig", str(kubeconfig),
            "--node-name", node_name,
            "--state-dir", str(self.state_dir),
            "--tls-cert", str(certs.agent_serving.cert),
            "--tls-key", str(certs.agent_serving.key),
            "--client-ca", str(certs.ca.cert),
            "--ready-file", str(self.ready_file),
        ]
        if image_config is not None:
            argv += ["--image-config", str(image_config)]
        env = dict(os.environ)
        # Importable even when the editable install predates hack/localcluster.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(HACK_DIR), env.get("PYTHONPATH", "")) if p
        )
        self.process = ManagedProcess("agent", argv, workdir / "logs" / "agent.log", env=env)

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def launch(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        self.process.start()

    def wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if not self.process.alive():
                raise RuntimeError(f"local agent exited:\n{self.process.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"local agent not ready after {timeout:.0f}s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.stop(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.launch()
        self.wait()


class LocalCluster:
    """A complete local cluster in ``workdir``; ``start()`` returns once it is usable."""

    def __init__(
        self,
        workdir: Path,
        bin_dir: Path | None = None,
        with_agent: bool = True,
        with_redis: bool = True,
        *,
        node_name: str = "local-node",
        image_config: Path | None = None,
        node: str = "agent",
    ) -> None:
        if node not in NODE_MODES:
            raise ValueError(f"node must be one of {NODE_MODES}, not {node!r}")
        self.workdir = workdir.resolve()
        self.bin_dir = bin_dir if bin_dir is not None else default_bin_dir()
        self.node_name = node_name
        self.node_mode = node
        self.image_config = image_config
        real = node == "kubelet"
        self.real_node: RealNode | None = (
            RealNode(self.workdir, self.workdir / "kubeconfig", node_name) if real else None
        )
        self.control_plane = ControlPlane(
            self.workdir, self.bin_dir, node_name=node_name,
            controllers=ALL_DEFAULT_CONTROLLERS if real else DEFAULT_CONTROLLERS,
            bind_address=NODE_IP if real else "127.0.0.1",
            scheduler_bin=self.real_node.bin_dir / "kube-scheduler" if self.real_node else None,
        )
        self.redis: RedisServer | None = (
            RedisServer(self.workdir / "redis") if with_redis else None
        )
        self.agent: AgentProcess | None = None
        self._with_agent = with_agent and not real
        self.started_in: float | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    @property
    def server_url(self) -> str:
        return self.control_plane.server_url

    @property
    def host_ip(self) -> str:
        """Where this cluster's pods reach a server on this machine."""
        return self.real_node.host_ip if self.real_node is not None else "127.0.0.1"

    @property
    def redis_url(self) -> str | None:
        return self.redis.url if self.redis is not None else None

    def env(self) -> dict[str, str]:
        """KUBECONFIG and REDIS_URL, for subprocesses and the ``.local/env`` file."""
        out = {"KUBECONFIG": str(self.kubeconfig)}
        if self.redis_url:
            out["REDIS_URL"] = self.redis_url
        return out

    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    def start(self, timeout: float = 120.0) -> LocalCluster:
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self.real_node is not None:
                self.real_node.prepare()
            self.control_plane.launch()
            if self.real_node is not None:
                self.real_node.launch()  # containerd + image import while the apiserver warms
            if self.redis is not None:
                self.redis.start()
            if self._with_agent:
                assert self.control_plane.certs is not None
                self.agent = AgentProcess(
                    self.workdir, self.kubeconfig, self.control_plane.certs,
                    self.node_name, self.image_config,
                )
                self.agent.launch()  # imports while the apiserver warms up
            self.control_plane.wait(timeout)
            if self.real_node is not None:
                assert self.control_plane.certs is not None
                self.real_node.start_node(self.control_plane.certs)
                self.real_node.wait(self.kubectl_path(), timeout - (time.monotonic() - t0))
            if self.agent is not None:
                self.agent.wait(max(timeout - (time.monotonic() - t0), 10.0))
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - t0
        log.info("local cluster ready in %.1fs at %s", self.started_in, self.server_url)
        return self

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()
        if self.real_node is not None:
            self.real_node.stop()
        self.control_plane.stop()
        if self.redis is not None:
            self.redis.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def processes(self) -> list[ManagedProcess]:
        procs = self.control_plane.processes()
        if self.agent is not None:
            procs.append(self.agent.process)
        if self.real_node is not None:
            procs += self.real_node.processes()
        return procs

    def heal(self) -> list[str]:
        """Restart whatever died (for the supervisor); the names of what was restarted."""
        restarted = []
        cp = self.control_plane
        for proc in cp.dead_processes():
            log.warning("%s exited with %s; restarting it", proc.name, proc.returncode())
            proc.start()
            restarted.append(proc.name)
        if self.agent is not None and not self.agent.process.alive():
            log.warning("agent exited with %s; restarting it", self.agent.process.returncode())
            self.agent.launch()
            restarted.append("agent")
        for proc in self.real_node.processes() if self.real_node is not None else []:
            if not proc.alive():
                log.warning("%s exited with %s; restarting it", proc.name, proc.returncode())
                proc.start()
                restarted.append(proc.name)
        if self.redis is not None and not self.redis.alive():
            log.warning("redis-server exited; restarting it")
            self.redis.start()
            restarted.append("redis-server")
        return restarted
