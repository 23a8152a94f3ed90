"""The bench environment: the local cluster with the CRDs, the operator process, CPU time."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from localcluster import LocalCluster
from localcluster.process import ManagedProcess, free_port

from .apiserver_metrics import Labels, label, parse_metrics
from .common import API, INSTANT_IMAGE
from .kube import Kube

# --- the operator process -------------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    rss_kib: int
    hwm_kib: int


class Operator:
    """`python -m taskforge.handlers.main` as the Helm chart would run it, with its ports free."""

    def __init__(self, cluster: LocalCluster, workdir: Path, name: str, *,
                 step_events: bool = True, profile: bool = False,
                 extra_env: dict[str, str] | None = None) -> None:
        self.http_port = free_port()  # /metrics, /healthz, /readyz, /hooks
        self.profile_path: Path | None = workdir / f"{name}.prof" if profile else None
        env = dict(os.environ)
        env.update(
            KUBECONFIG=str(cluster.kubeconfig),
            TASKFORGE_EXECUTOR_IMAGE=INSTANT_IMAGE,
            TASKFORGE_HTTP_PORT=str(self.http_port),
            TASKFORGE_STEP_EVENTS="true" if step_events else "false",
        )
        if cluster.redis_url:
            env["REDIS_URL"] = cluster.redis_url
        if src := os.environ.get("TASKFORGE_BENCH_OPERATOR_SRC"):
            # A/B: the operator from another checkout's `operator/` (e.g. `git archive` of an
            # older commit), the benchmark itself from this one.
            env["PYTHONPATH"] = src
        env.update(extra_env or {})
        argv = [sys.executable]
        if self.profile_path is not None:
            argv += ["-m", "cProfile", "-o", str(self.profile_path)]
        argv += ["-m", "taskforge.handlers.main"]
        self.process = ManagedProcess(f"operator-{name}", argv, workdir / f"operator-{name}.log",
                                      env=env)

    @property
    def pid(self) -> int:
        pid = self.process.pid
        if pid is None:
            raise RuntimeError("the operator is not running")
        return pid

    def start(self) -> Operator:
        self.process.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise RuntimeError(f"operator exited:\n{self.process.log_tail(40)}")
            with contextlib.suppress(httpx.HTTPError):
                url = f"http://127.0.0.1:{self.http_port}/healthz"
                if httpx.get(url, timeout=1).is_success:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"operator not healthy in 60s:\n{self.process.log_tail(40)}")

    def stop(self) -> None:
        self.process.stop(timeout=20)
        if self.profile_path is not None and self.profile_path.exists():
            print(f"--- cProfile of the operator ({self.process.name}), main thread, "
                  f"by own time\n{top_functions(self.profile_path)}", flush=True)

    def __enter__(self) -> Operator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def memory(self) -> Memory:
        fields: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
        return Memory(rss_kib=fields["VmRSS"], hwm_kib=fields["VmHWM"])

    def metrics(self) -> dict[str, dict[Labels, float]]:
        text = httpx.get(f"http://127.0.0.1:{self.http_port}/metrics", timeout=10).text
        return parse_metrics(text, [
            "taskforge_reconciles_total", "taskforge_reconcile_duration_seconds_bucket",
            "taskforge_reconcile_duration_seconds_sum", "taskforge_status_conflicts_total",
        ])

    def reconciles(self) -> float:
        return sum(self.metrics()["taskforge_reconciles_total"].values())

    def wait_quiet(self, quiet: float = 2.0, timeout: float = 60.0) -> bool:
        """Until no reconcile has finished for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last, since = self.reconciles(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = self.reconciles()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return True
        return False


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Reconciles:
    """What the operator's /metrics say about the reconciles between two scrapes."""

    count: float
    seconds: float
    buckets: list[tuple[float, float]]  # (le, cumulative count)
    conflicts: float

    @staticmethod
    def scrape(op: Operator) -> Reconciles:
        m = op.metrics()
        buckets = sorted((float(label(k, "le")), v)
                         for k, v in m["taskforge_reconcile_duration_seconds_bucket"].items())
        return Reconciles(
            count=sum(m["taskforge_reconciles_total"].values()),
            seconds=sum(m["taskforge_reconcile_duration_seconds_sum"].values()),
            buckets=buckets,
            conflicts=sum(m["taskforge_status_conflicts_total"].values()),
        )

    def minus(self, before: Reconciles) -> Reconciles:
        return Reconciles(
            count=self.count - before.count,
            seconds=self.seconds - before.seconds,
            buckets=[(le, c - b) for (le, c), (_, b) in
                     zip(self.buckets, before.buckets, strict=True)],
            conflicts=self.conflicts - before.conflicts,
        )

    def quantile_bound(self, q: float) -> str:
        """The upper bound of the histogram bucket holding quantile q."""
        total = self.buckets[-1][1] if self.buckets else 0
        if total <= 0:
            return "n/a"
        for le, cumulative in self.buckets:
            if cumulative >= q * total:
                return "> 5 s" if math.isinf(le) else f"<= {le * 1000:g} ms"
        return "n/a"


def top_functions(profile: Path, limit: int = 25) -> str:
    out = io.StringIO()
    stats = pstats.Stats(str(profile), stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    return out.getvalue()


# --- the bench environment ------------------------------------------------------------------------


class Bench:
    def __init__(self, workdir: Path, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.args = args
        self.cluster = LocalCluster(workdir / "cluster")
        self.kube: Kube | None = None

    def start(self) -> None:
        t0 = time.monotonic()
        self.cluster.start()
        self.kube = Kube(self.cluster)
        self.install_crds()
        print(f"local cluster and CRDs ready in {time.monotonic() - t0:.1f}s "
              f"({self.cluster.workdir})", flush=True)

    @property
    def k(self) -> Kube:
        if self.kube is None:
            raise RuntimeError("the cluster is not started")
        return self.kube

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.cluster.kubectl_path()), "--kubeconfig", str(self.cluster.kubeconfig),
                *args]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done

    def install_crds(self) -> None:
        self.kubectl("apply", "--server-side", "-f", str(self.args.crds))
        deadline = time.monotonic() + 60
        while True:  # `kubectl wait` fails while a fresh CRD has no status yet
            done = self.kubectl("wait", "--for=condition=established", "--timeout=10s",
                                "crd/workflows.taskforge.io", "crd/workflowruns.taskforge.io",
                                check=time.monotonic() > deadline)
            if done.returncode == 0:
                return
            time.sleep(0.3)

    def operator(self, name: str, **kwargs: Any) -> Operator:
        """An operator for one scenario (under cProfile with --profile, except for memory)."""
        kwargs.setdefault("profile", self.args.profile and name != "memory")
        return Operator(self.cluster, self.workdir, name, **kwargs)

    def runs_path(self, ns: str) -> str:
        return f"{API}/namespaces/{ns}/workflowruns"

    def delete_namespace(self, ns: str, timeout: float) -> float:
        """Delete a namespace and wait until it is gone; the seconds it took."""
        t0 = time.monotonic()
        self.k.http.delete(f"/api/v1/namespaces/{ns}")
        while self.k.exists(f"/api/v1/namespaces/{ns}"):
            if time.monotonic() - t0 > timeout:
                print(f"  namespace {ns} still terminating after {timeout:.0f}s; going on")
                break
            time.sleep(0.5)
        return time.monotonic() - t0

    def server_version(self) -> str:
        return str(self.k.get("/version").get("gitVersion", "?"))

    def cluster_cpu(self) -> dict[str, float]:
        """CPU seconds so far of each control-plane process (and the agent, if running)."""
        out: dict[str, float] = {}
        for proc in self.cluster.processes():
            if proc.pid is not None and proc.alive():
                with contextlib.suppress(OSError):
                    out[proc.name] = process_cpu_seconds(proc.pid)
        return out


def postgres_cpu_seconds(postmaster: int) -> float:
    """CPU seconds of a PostgreSQL server: the postmaster, its live children (backends,
    walwriter, checkpointer, autovacuum, ...) and the children it has reaped (a backend
    whose client closed: cutime + cstime), so a backend's exit between two reads keeps
    its CPU in the sum."""
    tick = os.sysconf("SC_CLK_TCK")
    stat = Path(f"/proc/{postmaster}/stat").read_text()
    fields = stat[stat.rfind(")") + 2:].split()
    total = sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rfind(")") + 2:].split()
            if int(fields[1]) == postmaster:
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


def bench_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_and_children_cpu_seconds() -> float:
    """This process and its reaped children (cluster processes, operators, kubectl)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="taskforge-bench-operator-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)
