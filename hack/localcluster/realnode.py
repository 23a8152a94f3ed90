"""A real node for the local cluster: containerd, runc, CNI, kubelet and kube-proxy.

The second node mode (``NODE=kubelet``), beside the agent: step Jobs and the Helm chart's
operator run in real containers, with their security context enforced by runc. The
binaries come from hack/build-node-bins.sh, the images from hack/build-images.sh (OCI
archives, imported into this node's fresh containerd at every start), the CNI plugins from
Debian. Addresses and configuration files are in nodeconfig.py, the machine-wide state and
its removal in hostnet.py. One real node at a time per machine: its interface names and
addresses are fixed.

Order matters: ``prepare()`` puts the node IP on its interface before the apiserver binds
it; ``launch()`` starts containerd and imports the images while the apiserver warms up;
``start_node()`` starts kubelet and kube-proxy; ``wait()`` returns once the Node is Ready.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
from pathlib import Path

from localcluster import hostnet
from localcluster.certs import ClusterCerts
from localcluster.nodeconfig import (
    NODE_IP,
    cni_config,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
)
from localcluster.process import ManagedProcess, free_port

log = logging.getLogger(__name__)
HACK_DIR = Path(__file__).resolve().parent.parent
NODE_BUILD_SCRIPT = HACK_DIR / "build-node-bins.sh"


class RealNodeError(RuntimeError):
    pass


def default_node_bin_dir() -> Path:
    """``$TASKFORGE_NODE_BIN_DIR``, else what hack/build-node-bins.sh prints last."""
    if os.environ.get("TASKFORGE_NODE_BIN_DIR"):
        return Path(os.environ["TASKFORGE_NODE_BIN_DIR"])
    result = subprocess.run(["bash", str(NODE_BUILD_SCRIPT)], check=True,
                            stdout=subprocess.PIPE, text=True)
    return Path(result.stdout.strip().splitlines()[-1])


def default_image_dir() -> Path:
    """Where hack/build-images.sh leaves the OCI archives the node imports."""
    if os.environ.get("TASKFORGE_IMAGE_DIR"):
        return Path(os.environ["TASKFORGE_IMAGE_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(os.environ.get("TASKFORGE_CACHE", cache / "taskforge")) / "images" / "oci"


class RealNode:
    """containerd + kubelet + kube-proxy in ``workdir/node``, registered as ``node_name``."""

    def __init__(
        self,
        workdir: Path,
        kubeconfig: Path,
        node_name: str,
        bin_dir: Path | None = None,
        image_dir: Path | None = None,
    ) -> None:
        self.dir = workdir.resolve() / "node"
        self.kubeconfig = kubeconfig
        self.node_name = node_name
        self.bin_dir = bin_dir if bin_dir is not None else default_node_bin_dir()
        self.image_dir = image_dir if image_dir is not None else default_image_dir()
        self.containerd: ManagedProcess | None = None
        self.kubelet: ManagedProcess | None = None
        self.kube_proxy: ManagedProcess | None = None
        self.imported: list[str] = []

    @property
    def address(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    @property
    def host_ip(self) -> str:
        """Where pods reach this machine: servers for pods listen here, not on 127.0.0.1."""
        return NODE_IP

    def _bin(self, name: str) -> Path:
        path = self.bin_dir / name
        if not path.exists():
            raise RealNodeError(f"{path} missing: run hack/build-node-bins.sh")
        return path

    def _log(self, name: str) -> Path:
        return self.dir.parent / "logs" / f"{name}.log"

    # -- lifecycle ------------------------------------------------------------------

    def prepare(self) -> None:
        """Host networking first (the apiserver binds the node IP); clears a crashed run."""
        if os.geteuid() != 0:
            raise RealNodeError("the real node needs root (containerd, runc, iptables)")
        archives = sorted(self.image_dir.glob("*.tar")) if self.image_dir.is_dir() else []
        if not any("pause" in a.name for a in archives):
            raise RealNodeError(f"no pause image in {self.image_dir}: run `make image`")
        self._cleanup()
        hostnet.setup(self.dir / "host")

    def launch(self) -> None:
        """containerd up and the images imported (kubelet starts in ``start_node``)."""
        (self.dir / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        (self.dir / "cni" / "net.d" / "10-taskforge.conflist").write_text(cni_config(self.dir))
        config = self.dir / "containerd.toml"
        config.write_text(containerd_config(self.dir, self.bin_dir))
        env = dict(os.environ)
        # The v2 shim first: an older containerd-shim-runc-v2 on PATH fails every task.
        env["PATH"] = f"{self.bin_dir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        self.containerd = ManagedProcess(
            "containerd", [str(self._bin("containerd")), "--config", str(config)],
            self._log("containerd"), env=env,
        )
        self.containerd.start()
        deadline = time.monotonic() + 30
        while self._ctr("version").returncode != 0:
            if not self.containerd.alive():
                raise RealNodeError(f"containerd exited:\n{self.containerd.log_tail()}")
            if time.monotonic() > deadline:
                raise RealNodeError(f"containerd not serving:\n{self.containerd.log_tail()}")
            time.sleep(0.1)
        self._import_images()

    def _ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self._bin("ctr")), "--address", str(self.address), "-n", "k8s.io", *args],
            capture_output=True, text=True, check=False, timeout=300,
        )

    def _import_images(self) -> None:
        t0 = time.monotonic()
        for archive in sorted(self.image_dir.glob("*.tar")):
            result = self._ctr("images", "import", str(archive))
            if result.returncode != 0:
                raise RealNodeError(f"ctr import {archive}: {result.stderr}")
            self.imported.append(archive.stem)
        aliases = self.image_dir / "aliases"
        for line in aliases.read_text().splitlines() if aliases.exists() else []:
            if len(line.split()) == 2:
                self._ctr("images", "tag", "--force", *line.split())
        log.info("imported %d images in %.1fs", len(self.imported), time.monotonic() - t0)

    def start_node(self, certs: ClusterCerts) -> None:
        kubelet_dir = self.dir / "kubelet"
        kubelet_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "kubelet.yaml"
        cfg.write_text(kubelet_config(
            sock=self.address, port=free_port(), healthz_port=free_port(),
            ca=certs.ca.cert, cert=certs.agent_serving.cert, key=certs.agent_serving.key,
        ))
        self.kubelet = ManagedProcess("kubelet", [
            str(self._bin("kubelet")),
            f"--config={cfg}",
            f"--kubeconfig={self.kubeconfig}",
            f"--root-dir={kubelet_dir}",
            f"--cert-dir={kubelet_dir / 'pki'}",
            f"--hostname-override={self.node_name}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ], self._log("kubelet"))
        proxy_cfg = self.dir / "kube-proxy.yaml"
        proxy_cfg.write_text(kube_proxy_config(
            kubeconfig=self.kubeconfig, node_name=self.node_name,
            healthz_port=free_port(), metrics_port=free_port(),
        ))
        self.kube_proxy = ManagedProcess(
            "kube-proxy", [str(self._bin("kube-proxy")), f"--config={proxy_cfg}", "--v=1"],
            self._log("kube-proxy"),
        )
        self.kubelet.start()
        self.kube_proxy.start()

    def wait(self, kubectl: Path, timeout: float) -> None:
        """Until the Node reports Ready (kubelet registered, runtime and CNI up)."""
        deadline = time.monotonic() + max(timeout, 5.0)
        last = ""
        while time.monotonic() < deadline:
            for proc in self.processes():
                if not proc.alive():
                    raise RealNodeError(f"{proc.name} exited:\n{proc.log_tail()}")
            result = subprocess.run(
                [str(kubectl), "--kubeconfig", str(self.kubeconfig), "get", "node",
                 self.node_name, "-o", "json"],
                capture_output=True, text=True, check=False,
            )
            if result.returncode == 0:
                conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
                ready = [c for c in conditions if c.get("type") == "Ready"]
                if ready and ready[0].get("status") == "True":
                    return
                last = json.dumps(ready)
            else:
                last = result.stderr.strip()
            time.sleep(0.2)
        raise RealNodeError(f"node {self.node_name} not Ready after {timeout:.0f}s: {last}")

    def processes(self) -> list[ManagedProcess]:
        return [p for p in (self.containerd, self.kubelet, self.kube_proxy) if p is not None]

    def stop(self) -> None:
        """Stop everything and remove every container, mount, link and rule it made."""
        for proc in (self.kube_proxy, self.kubelet):
            if proc is not None:
                proc.stop(timeout=10)
        hostnet.kill_cgroup_processes()
        if self.containerd is not None and self.containerd.alive():
            self.containerd.stop(timeout=10)
        self._cleanup()

    def _cleanup(self) -> None:
        for pid in hostnet.shim_pids(self.address):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        hostnet.kill_cgroup_processes()
        time.sleep(0.2)
        hostnet.unmount_under(self.dir)
        hostnet.remove_cgroups()
        proxy = self.bin_dir / "kube-proxy"
        hostnet.teardown(self.dir / "host", proxy if proxy.exists() else None)

    def leftovers(self) -> list[str]:
        return hostnet.leftovers(self.dir, self.address)
