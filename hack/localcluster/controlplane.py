"""etcd + kube-apiserver + kube-controller-manager (+ kube-scheduler), envtest's way.

With the node agent (``agent.py``) there is no kubelet, scheduler or container runtime: the
agent binds pods itself, and the controller manager runs only the controllers a Job-centred
workload and the Helm chart need (jobs, Deployments and ReplicaSets, EndpointSlices, garbage
collection, namespaces, service accounts, TTL-after-finished, pod GC), which keeps its
start-up and CPU use small on a 2-core CI machine. Not the node-lifecycle controller: the
agent's Node has no kubelet heartbeat semantics to judge. With the real node
(``realnode.py``) kube-scheduler binds pods and the controller manager runs its defaults,
as on any cluster; the apiserver then listens on the node IP so pods can reach it.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import shutil
import ssl
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from localcluster.certs import ClusterCerts, mint_cluster_certs
from localcluster.nodeconfig import SERVICE_CIDR
from localcluster.process import ManagedProcess, free_port

log = logging.getLogger(__name__)

# Names as kube-controller-manager v1.36 spells them (see `kube-controller-manager --help`).
DEFAULT_CONTROLLERS: tuple[str, ...] = (
    "job-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "ttl-after-finished-controller",
    "pod-garbage-collector-controller",
    # Publishes kube-root-ca.crt into every namespace; pods that mount a
    # service-account token volume reference it, as on any real cluster.
    "root-ca-certificate-publisher-controller",
    # The chart's operator is a Deployment; its Service needs EndpointSlices.
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    # The chart's taskforge-view/-edit/-admin ClusterRoles aggregate into view/edit/admin.
    "clusterrole-aggregation-controller",
)
ALL_DEFAULT_CONTROLLERS: tuple[str, ...] = ("*",)
# How often wait() starts a controller manager that keeps exiting before it gives up.
CONTROLLER_MANAGER_STARTS = 3
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


class ControlPlaneError(RuntimeError):
    pass


class ControlPlane:
    """A running Kubernetes control plane in ``workdir`` (fresh data on every start)."""

    def __init__(
        self,
        workdir: Path,
        bin_dir: Path,
        node_name: str = "local-node",
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        *,
        bind_address: str = "127.0.0.1",
        scheduler_bin: Path | None = None,
    ) -> None:
        self.workdir = workdir.resolve()
        self.bin_dir = bin_dir
        self.node_name = node_name
        self.controllers = tuple(controllers)
        self.bind_address = bind_address
        # kube-scheduler comes with the real node's binaries (hack/build-node-bins.sh)
        self.scheduler_bin = scheduler_bin
        self.scheduler: ManagedProcess | None = None
        self.certs: ClusterCerts | None = None
        self.apiserver_port = 0
        self.etcd_url = ""
        self.etcd: ManagedProcess | None = None
        self.apiserver: ManagedProcess | None = None
        self.controller_manager: ManagedProcess | None = None

    # -- public API ---------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def server_url(self) -> str:
        return f"https://{self.bind_address}:{self.apiserver_port}"

    def start(self, timeout: float = 90.0) -> None:
        """Start all three and return once the apiserver is ready and controllers run."""
        self.launch()
        self.wait(timeout)

    def launch(self) -> None:
        """Mint certificates, write the kubeconfig and spawn etcd and the apiserver.

        They start at once (the apiserver retries etcd), so callers can start their own
        components (the agent) while the apiserver warms up. The controller manager is
        spawned by ``wait()`` once the apiserver is ready: its delegated authentication
        reads a ConfigMap at start-up and exits at once if the apiserver refuses the
        connection, which on a slow or cold machine it still does at that moment.
        """
        for sub in ("etcd", "logs", "pki"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.certs = mint_cluster_certs(self.workdir / "pki", self.node_name,
                                        extra_ips=[self.bind_address])
        self.apiserver_port = free_port()
        self._write_kubeconfig()
        client_port, peer_port = free_port(), free_port()
        self.etcd = ManagedProcess("etcd", self._etcd_argv(client_port, peer_port),
                                   self._log("etcd"))
        self.apiserver = ManagedProcess("kube-apiserver", self._apiserver_argv(client_port),
                                        self._log("kube-apiserver"))
        self.controller_manager = ManagedProcess(
            "kube-controller-manager", self._controller_manager_argv(),
            self._log("kube-controller-manager"),
        )
        if self.scheduler_bin is not None:
            self.scheduler = ManagedProcess("kube-scheduler", self._scheduler_argv(),
                                            self._log("kube-scheduler"))
        try:
            self.etcd.start()
            self.apiserver.start()
        except BaseException:
            self.stop()
            raise

    def wait(self, timeout: float = 90.0) -> None:
        """Block until /readyz is ok, then start the controller manager and await its work."""
        deadline = time.monotonic() + timeout
        try:
            self.wait_ready(deadline - time.monotonic())
            assert self.controller_manager is not None, "launch() first"
            if not self.controller_manager.alive():
                self.controller_manager.start()
            if self.scheduler is not None and not self.scheduler.alive():
                self.scheduler.start()
            self._wait_for_controllers(deadline - time.monotonic())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        # Controller manager first: its watches would hold the apiserver's drain open.
        for proc in (self.scheduler, self.controller_manager, self.apiserver, self.etcd):
            if proc is not None:
                proc.stop(timeout=5)

    def restart_apiserver(self, timeout: float = 60.0) -> None:
        """Stop kube-apiserver and start it again on the same port (same kubeconfig)."""
        assert self.apiserver is not None, "control plane not started"
        # A graceful stop waits up to a minute for clients' open watches to drain;
        # a restart test wants the outage, not the drain, so the grace is short.
        self.apiserver.stop(timeout=3)
        self.apiserver.start()
        self.wait_ready(timeout)

    def processes(self) -> list[ManagedProcess]:
        procs = (self.etcd, self.apiserver, self.controller_manager, self.scheduler)
        return [p for p in procs if p]

    def dead_processes(self) -> list[ManagedProcess]:
        return [p for p in self.processes() if not p.alive()]

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 1.0)
        last = ""
        while time.monotonic() < deadline:
            for proc in self.processes():
                if proc.returncode() is not None and proc.name not in (
                    "kube-controller-manager", "kube-scheduler"
                ):
                    raise ControlPlaneError(
                        f"{proc.name} exited with {proc.returncode()}:\n{proc.log_tail()}"
                    )
            status, body = self.get("/readyz")
            if status == 200:
                return
            last = f"{status} {body[-500:]}"
            time.sleep(0.1)
        raise ControlPlaneError(f"kube-apiserver not ready after {timeout:.0f}s: {last}")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET ``path`` as admin; status 0 when the connection fails."""
        assert self.certs is not None
        ctx = ssl.create_default_context(cafile=str(self.certs.ca.cert))
        ctx.load_cert_chain(str(self.certs.admin.cert), str(self.certs.admin.key))
        conn = http.client.HTTPSConnection(
            self.bind_address, self.apiserver_port, context=ctx, timeout=timeout
        )
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            return 0, str(exc)
        finally:
            conn.close()

    # -- internals ------------------------------------------------------------------

    def _log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def _bin(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.exists():
            raise ControlPlaneError(f"{path} missing: run hack/build-bins.sh")
        return str(path)

    def _wait_for_controllers(self, timeout: float) -> None:
        """The default service account appears once the controller manager works.

        Pods are rejected by the ServiceAccount admission plugin until it exists, so
        "ready" without it would make the first test of a session flaky. A controller
        manager that exits during start-up (the apiserver can still blip right after its
        first ready answer) is started again a few times before this gives up.
        """
        deadline = time.monotonic() + max(timeout, 1.0)
        starts_left = CONTROLLER_MANAGER_STARTS - 1
        while time.monotonic() < deadline:
            status, _ = self.get("/api/v1/namespaces/default/serviceaccounts/default")
            if status == 200:
                return
            cm = self.controller_manager
            if cm is not None and cm.returncode() is not None:
                if starts_left == 0:
                    raise ControlPlaneError(
                        f"kube-controller-manager exited with {cm.returncode()}:\n"
                        f"{cm.log_tail()}"
                    )
                log.warning("kube-controller-manager exited with %s during start-up; "
                            "starting it again", cm.returncode())
                starts_left -= 1
                time.sleep(0.5)
                cm.start()
            time.sleep(0.1)
        raise ControlPlaneError(f"controllers not running after {timeout:.0f}s")

    def _etcd_argv(self, client_port: int, peer_port: int) -> list[str]:
        client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        self.etcd_url = client
        return [
            self._bin("etcd"),
            "--name=default",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_argv(self, etcd_port: int) -> list[str]:
        c = self.certs
        assert c is not None
        return [
            self._bin("kube-apiserver"),
            # envtest's flags
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--cert-dir={self.workdir / 'pki'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            f"--client-ca-file={c.ca.cert}",
            f"--tls-cert-file={c.apiserver.cert}",
            f"--tls-private-key-file={c.apiserver.key}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={c.sa_public_key}",
            f"--service-account-signing-key-file={c.sa_private_key}",
            # loopback only (agent), or the node IP that only this machine has (real node)
            f"--advertise-address={self.bind_address}",
            f"--bind-address={self.bind_address}",
            f"--secure-port={self.apiserver_port}",
            # `kubectl logs` goes apiserver -> agent's log server with these
            f"--kubelet-client-certificate={c.kubelet_client.cert}",
            f"--kubelet-client-key={c.kubelet_client.key}",
            f"--kubelet-certificate-authority={c.ca.cert}",
            "--kubelet-preferred-address-types=InternalIP",
            # aggregation layer, so an APIService (e.g. metrics-server) could work
            f"--requestheader-client-ca-file={c.front_proxy_ca.cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={c.front_proxy_client.cert}",
            f"--proxy-client-key-file={c.front_proxy_client.key}",
            # headroom for the operator benchmark; namespace deletion in parallel
            "--max-requests-inflight=1000",
            "--max-mutating-requests-inflight=500",
            "--delete-collection-workers=4",
            # /debug/pprof for finding where the API server's CPU goes under a benchmark
            # (bench/RESULTS.md, issue 14); off otherwise, as it costs a little per request.
            "--profiling=" + ("true" if os.environ.get("TASKFORGE_APISERVER_PROFILING") == "1"
                              else "false"),
            # the default reconciler rejects 127.0.0.1 as an endpoint and logs an error
            # every 10 s; with the agent nothing uses the service's endpoints, but pods
            # on the real node reach the apiserver through the `kubernetes` Service.
            "--endpoint-reconciler-type="
            + ("none" if self.bind_address.startswith("127.") else "lease"),
        ]

    def _controller_manager_argv(self) -> list[str]:
        c = self.certs
        assert c is not None
        kubeconfig = str(self.kubeconfig)
        return [
            self._bin("kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--controllers={','.join(self.controllers)}",
            "--leader-elect=false",
            f"--service-account-private-key-file={c.sa_private_key}",
            f"--root-ca-file={c.ca.cert}",
            "--use-service-account-credentials=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--cert-dir={self.workdir / 'pki' / 'kcm'}",
            # defaults (qps 20, 5 job workers) cap throughput far below 10 pods/s
            "--kube-api-qps=500",
            "--kube-api-burst=1000",
            "--concurrent-job-syncs=20",
            "--concurrent-ttl-after-finished-syncs=10",
            "--cluster-name=taskforge-local",
        ]

    def _scheduler_argv(self) -> list[str]:
        kubeconfig = str(self.kubeconfig)
        return [
            str(self.scheduler_bin),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--cert-dir={self.workdir / 'pki' / 'scheduler'}",
            "--kube-api-qps=500",
            "--kube-api-burst=1000",
        ]

    def _write_kubeconfig(self) -> None:
        c = self.certs
        assert c is not None
        self.kubeconfig.write_text(
            render_kubeconfig(self.server_url, c.ca.cert, c.admin.cert, c.admin.key)
        )
        self.kubeconfig.chmod(0o600)


def render_kubeconfig(server: str, ca: Path, cert: Path, key: Path) -> str:
    """A self-contained kubeconfig (data embedded, so it can be copied anywhere)."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "taskforge-local",
            "cluster": {"server": server, "certificate-authority-data": b64(ca)},
        }],
        "users": [{
            "name": "admin",
            "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
        }],
        "contexts": [{
            "name": "taskforge-local",
            "context": {"cluster": "taskforge-local", "user": "admin", "namespace": "default"},
        }],
        "current-context": "taskforge-local",
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


__all__ = [
    "ALL_DEFAULT_CONTROLLERS", "DEFAULT_CONTROLLERS", "ControlPlane", "ControlPlaneError",
    "render_kubeconfig",
]
