"""Benchmark of the operator on the local control plane: the DESIGN.md targets that need a cluster.

Starts its own LocalCluster (temp dir, loopback only), installs the CRDs and runs the real
operator (`python -m taskforge.handlers.main`) as a child process with
TASKFORGE_EXECUTOR_IMAGE=taskforge.io/bench-instant, so every step pod "exits 0" the moment the
node agent sees it: what is measured is the operator and the control plane, not the executor.
Scenarios (in this order, all by default):

  memory      operator RSS with 1,000 active runs. The node agent is stopped for this one, so
              every step pod stays Pending (unscheduled) and every run stays Running with an
              active Job and a pod, the way runs wait on a busy cluster. RSS and VmHWM come from
              /proc/PID/status of a freshly started operator once all runs are Running and the
              operator has gone quiet. The namespace is then deleted and the agent restarted.
  handoff     step hand-off latency: runs of a 10-step chain of log steps, one after another
              (plus one warm-up run). One process watches pods and Jobs in the namespace; a
              hand-off is the time from the watch event showing step N's container terminated
              to the ADDED event of step N+1's Job (both seen through the same kind of watch,
              so both carry the same watch delay).
  throughput  300 single-step runs created by 4 concurrent creators; runs/min from the first
              create until a watch on runs has seen every one Succeeded; operator CPU time.
  writes      API writes per step from kube-apiserver's own `apiserver_request_total` counters
              (scraped with the admin client cert) around batches of runs: a 10-step chain and
              single-step runs, with step Events on and off (TASKFORGE_STEP_EVENTS). Writes are
              split into the operator's, the benchmark's own (creating runs) and the cluster's
              (job controller, node agent: pods, pods/binding, jobs/status, their events...).
              Events are attributed by their reporting component.
  size        a 1,000-step run (1 root, 989 parallel workers, 10 collectors) run to the end; the
              serialized size of the run object as the API server returns it (and stores it),
              with a breakdown, and the time the run took.

The bench workflows keep up to 1,000 finished runs (`history.successfulRuns`), so run-history
cleanup (one DELETE per finished run past the limit) does not happen inside a measurement.

Usage: .venv/bin/python bench/bench_operator.py [SCENARIO ...] [--record] [--keep] [--profile]
  --record   append a dated section with the tables to bench/RESULTS.md
  --keep     keep the temp dir (cluster and operator logs) and print where it is
  --profile  run the operator under cProfile (all scenarios but memory); print its top functions
Exit status: 0 when every scenario ran (targets missed or not), 1 when one failed to run,
2 with --strict when a target was missed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import platform
import pstats
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from localcluster import LocalCluster
from localcluster.process import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
API = "/apis/taskforge.io/v1alpha1"
INSTANT_IMAGE = "taskforge.io/bench-instant"
USER_AGENT = "taskforge-bench"
OPERATOR_COMPONENT = "taskforge-operator"
TERMINAL = frozenset({"Succeeded", "Failed", "Cancelled"})
HISTORY = {"successfulRuns": 1000, "failedRuns": 1000}
SCENARIOS = ("memory", "handoff", "throughput", "writes", "size")
JSON = dict[str, Any]


# --- small helpers ------------------------------------------------------------------------------


def quantile(values: Iterable[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    data = sorted(values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


@dataclass
class Section:
    """One table of results (markdown, so it pastes into RESULTS.md as is)."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        out = [f"### {self.title}", "", line(self.headers),
               "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(r) for r in self.rows]
        if self.notes:
            out.append("")
            out += [f"* {n}" for n in self.notes]
        return "\n".join(out) + "\n"


@dataclass
class Summary:
    what: str
    target: str
    measured: str
    ok: bool


@dataclass
class Outcome:
    sections: list[Section] = field(default_factory=list)
    summary: list[Summary] = field(default_factory=list)


# --- the API, over plain HTTPS with the admin client cert -----------------------------------------


class Kube:
    """Raw JSON calls to the API server (no model decoding: the benchmark must stay light)."""

    def __init__(self, cluster: LocalCluster) -> None:
        certs = cluster.control_plane.certs
        if certs is None:
            raise RuntimeError("the cluster has no certificates yet")
        self.base = cluster.server_url
        self.tls = ssl.create_default_context(cafile=str(certs.ca.cert))
        self.tls.load_cert_chain(str(certs.admin.cert), str(certs.admin.key))
        self.http = self.client()

    def client(self, read_timeout: float | None = 60.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.base,
            verify=self.tls,
            timeout=httpx.Timeout(30.0, read=read_timeout),
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )

    def request(self, method: str, path: str, client: httpx.Client | None = None,
                **kwargs: Any) -> httpx.Response:
        """One call, retried while the API server says 429 (e.g. a fresh CRD's cache warming up)
        or is briefly unavailable."""
        deadline = time.monotonic() + 30
        while True:
            resp = (client or self.http).request(method, path, **kwargs)
            if resp.status_code not in (429, 503) or time.monotonic() > deadline:
                return resp
            time.sleep(min(1.0, float(resp.headers.get("Retry-After") or 0.2)))

    def get(self, path: str, **params: str) -> JSON:
        resp = self.request("GET", path, params=params)
        resp.raise_for_status()
        body: JSON = resp.json()
        return body

    def get_raw(self, path: str) -> bytes:
        resp = self.request("GET", path)
        resp.raise_for_status()
        return resp.content

    def exists(self, path: str) -> bool:
        resp = self.request("GET", path)
        if resp.status_code == 404:
            return False
        resp.raise_for_status()
        return True

    def post(self, path: str, body: JSON) -> JSON:
        resp = self.request("POST", path, json=body)
        if resp.status_code >= 400:
            raise RuntimeError(f"POST {path}: {resp.status_code} {resp.text[:500]}")
        result: JSON = resp.json()
        return result

    def namespace(self, name: str) -> None:
        self.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": name}})

    def workflow(self, ns: str, name: str, spec: JSON) -> None:
        self.post(f"{API}/namespaces/{ns}/workflows",
                  {"apiVersion": "taskforge.io/v1alpha1", "kind": "Workflow",
                   "metadata": {"name": name}, "spec": spec})

    def create_run(self, ns: str, name: str, workflow: str) -> None:
        self.post(f"{API}/namespaces/{ns}/workflowruns",
                  {"apiVersion": "taskforge.io/v1alpha1", "kind": "WorkflowRun",
                   "metadata": {"name": name}, "spec": {"workflowRef": {"name": workflow}}})

    def create_runs(self, ns: str, workflow: str, names: list[str],
                    threads: int = 4) -> dict[str, float]:
        """Create runs from `threads` concurrent creators; the monotonic time of each create."""
        created: dict[str, float] = {}

        def one(name: str) -> None:
            created[name] = time.monotonic()
            self.create_run(ns, name, workflow)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, names))
        return created

    def metrics(self) -> str:
        resp = self.request("GET", "/metrics")
        resp.raise_for_status()
        return resp.text


# --- watches -------------------------------------------------------------------------------------


Handler = Callable[[float, str, JSON], None]


class Watch:
    """A list+watch of one collection in a thread; `handler(monotonic_time, type, object)`.

    The time is taken when the event's line arrives, before it is decoded.
    """

    def __init__(self, kube: Kube, path: str, handler: Handler) -> None:
        self.kube = kube
        self.path = path
        self.handler = handler
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._resp: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch {path}", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Watch:
        self._thread.start()
        if not self.ready.wait(15):
            raise RuntimeError(f"watch on {self.path} did not start: {self.error!r}")
        return self

    def __exit__(self, *_: object) -> None:
        """Stop: shut the socket down under the reading thread, which then closes it.

        Closing it from here instead would free the file descriptor while the reader is still
        blocked on it; the next connection could get the same number and the old reader would
        eat its TLS records.
        """
        self._stop.set()
        resp = self._resp
        with contextlib.suppress(Exception):
            stream = resp.extensions.get("network_stream") if resp is not None else None
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        self._thread.join(5)

    def _list(self, client: httpx.Client) -> str:
        resp = self.kube.request("GET", self.path, client)
        resp.raise_for_status()
        body = resp.json()
        now = time.monotonic()
        for item in body.get("items") or []:
            self.handler(now, "ADDED", item)
        return str(body["metadata"]["resourceVersion"])

    def _stream(self, client: httpx.Client, rv: str) -> str | None:
        """Watch from `rv` until the server ends the stream; where to resume (None: list)."""
        params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true",
                  "timeoutSeconds": "600"}
        with client.stream("GET", self.path, params=params) as resp:
            if resp.status_code == 410:
                return None
            if resp.status_code in (429, 503):
                time.sleep(0.2)
                return rv
            resp.raise_for_status()
            self._resp = resp
            self.ready.set()
            for line in resp.iter_lines():
                if not line:
                    continue
                now = time.monotonic()
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":  # 410 Gone inside the stream
                    return None
                rv = obj["metadata"]["resourceVersion"]
                if kind != "BOOKMARK":
                    self.handler(now, kind, obj)
        return rv

    def _run(self) -> None:
        client = self.kube.client(read_timeout=None)
        rv: str | None = None
        try:
            while not self._stop.is_set():
                try:
                    if rv is None:
                        rv = self._list(client)
                    rv = self._stream(client, rv)
                except Exception as exc:
                    if self._stop.is_set():
                        break
                    self.error = exc
                    print(f"watch {self.path}: {exc!r}; reconnecting", file=sys.stderr)
                    time.sleep(0.2)
        finally:
            client.close()


class RunTracker:
    """Phases of the runs in one namespace, fed by a watch."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.phase: dict[str, str] = {}
        self.finished_at: dict[str, float] = {}

    def handle(self, now: float, kind: str, obj: JSON) -> None:
        name = obj["metadata"]["name"]
        phase = (obj.get("status") or {}).get("phase") or "Pending"
        with self.cond:
            if kind == "DELETED":
                self.phase.pop(name, None)
            else:
                self.phase[name] = phase
                if phase in TERMINAL and name not in self.finished_at:
                    self.finished_at[name] = now
            self.cond.notify_all()

    def count(self, *phases: str) -> int:
        with self.cond:
            return sum(1 for p in self.phase.values() if p in phases)

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def wait_finished(self, names: Iterable[str], timeout: float) -> bool:
        wanted = set(names)
        return self.wait(lambda: wanted <= self.finished_at.keys(), timeout)


# --- Prometheus text ------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
Labels = tuple[tuple[str, str], ...]


def parse_metrics(text: str, names: Iterable[str]) -> dict[str, dict[Labels, float]]:
    """The samples of the named metrics: {name: {sorted label pairs: value}}."""
    wanted = tuple(names)
    out: dict[str, dict[Labels, float]] = {n: {} for n in wanted}
    for line in text.splitlines():
        if not line.startswith(wanted):
            continue
        match = _SAMPLE.match(line)
        if match is None or match.group(1) not in out:
            continue
        labels = tuple(sorted(_LABEL.findall(match.group(3) or "")))
        out[match.group(1)][labels] = float(match.group(4))
    return out


def label(labels: Labels, key: str) -> str:
    return dict(labels).get(key, "")


WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
WriteKey = tuple[str, str]  # (verb, resource[/subresource])


def apiserver_writes(text: str) -> Counter[WriteKey]:
    samples = parse_metrics(text, ["apiserver_request_total"])["apiserver_request_total"]
    out: Counter[WriteKey] = Counter()
    for labels, value in samples.items():
        verb = label(labels, "verb")
        if verb not in WRITE_VERBS:
            continue
        resource = label(labels, "resource")
        sub = label(labels, "subresource")
        code = label(labels, "code")
        failed = "" if code.startswith("2") else f" [{code}]"
        out[(verb, (f"{resource}/{sub}" if sub else resource) + failed)] += int(value)
    return out


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
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.profile_path: Path | None = workdir / f"{name}.prof" if profile else None
        env = dict(os.environ)
        env.update(
            KUBECONFIG=str(cluster.kubeconfig),
            TASKFORGE_EXECUTOR_IMAGE=INSTANT_IMAGE,
            TASKFORGE_METRICS_PORT=str(self.metrics_port),
            TASKFORGE_WEBHOOK_PORT=str(free_port()),
            TASKFORGE_HEALTH_PORT=str(self.health_port),
            TASKFORGE_STEP_EVENTS="true" if step_events else "false",
        )
        if cluster.redis_url:
            env["REDIS_URL"] = cluster.redis_url
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
                url = f"http://127.0.0.1:{self.health_port}/healthz"
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
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
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


def log_step(name: str, deps: list[str] | None = None) -> JSON:
    step: JSON = {"name": name, "log": {"message": f"bench step {name} of {{{{ run.name }}}}"}}
    if deps:
        step["dependsOn"] = deps
    return step


def chain_spec(n: int) -> JSON:
    names = [f"s{i:02d}" for i in range(n)]
    steps = [log_step(s, [names[i - 1]] if i else None) for i, s in enumerate(names)]
    return {"steps": steps, "history": HISTORY}


def fan_out_spec(n: int = 1000, collectors: int = 10) -> JSON:
    """1 root, n-1-collectors parallel workers, collectors each waiting on every 10th worker."""
    workers = n - 1 - collectors
    steps = [log_step("root")]
    steps += [log_step(f"w{i:04d}", ["root"]) for i in range(workers)]
    steps += [log_step(f"c{c:02d}", [f"w{i:04d}" for i in range(c, workers, collectors)])
              for c in range(collectors)]
    return {"steps": steps, "history": HISTORY}


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


# --- scenario: memory -----------------------------------------------------------------------------


def scenario_memory(b: Bench) -> Outcome:
    n = b.args.memory_runs
    ns = "bench-memory"
    agent = b.cluster.agent
    if agent is None:
        raise RuntimeError("the cluster has no agent")
    tracker = RunTracker()
    names = [f"mem-{i:04d}" for i in range(n)]
    try:
        agent.stop()  # from here on pods are never bound: they stay Pending, runs stay Running
        b.k.namespace(ns)
        b.k.workflow(ns, "one", {"steps": [log_step("only")], "history": HISTORY})
        with b.operator("memory") as op, Watch(b.k, b.runs_path(ns), tracker.handle):
            time.sleep(1.0)
            idle = op.memory()
            t0 = time.monotonic()
            b.k.create_runs(ns, "one", names, threads=4)
            created_in = time.monotonic() - t0
            if not tracker.wait(lambda: tracker.count("Running") >= n, timeout=240):
                raise RuntimeError(f"only {tracker.count('Running')} of {n} runs Running")
            running_in = time.monotonic() - t0
            quiet = op.wait_quiet(quiet=3.0, timeout=120)
            jobs = len(b.k.get(f"/apis/batch/v1/namespaces/{ns}/jobs").get("items") or [])
            pods = len(b.k.get(f"/api/v1/namespaces/{ns}/pods").get("items") or [])
            loaded = op.memory()
            cpu = op.cpu_seconds()
            sample = json.loads(b.k.get_raw(f"{b.runs_path(ns)}/{names[0]}"))
            time.sleep(10)  # kopf's per-object workers end after 5 s idle
            later = op.memory()
    finally:
        gone_in = b.delete_namespace(ns, timeout=180)
        agent.launch()
        agent.wait()
    mib = 1024.0
    worst = max(loaded.rss_kib, later.rss_kib)
    ok = worst / mib <= 200
    sec = Section(
        f"Operator memory with {n:,} active runs (target <= 200 MiB RSS)",
        ["measure", "value"],
        [
            ["operator RSS, idle after start", f"{idle.rss_kib / mib:.1f} MiB"],
            [f"operator RSS, {n:,} runs Running", f"{loaded.rss_kib / mib:.1f} MiB"],
            ["operator RSS, 10 s later", f"{later.rss_kib / mib:.1f} MiB"],
            ["operator peak RSS (VmHWM)", f"{later.hwm_kib / mib:.1f} MiB"],
            ["RSS per active run", f"{(loaded.rss_kib - idle.rss_kib) / n:.1f} KiB"],
            ["active Jobs / Pending pods", f"{jobs:,} / {pods:,}"],
            ["one run object (JSON) / its managedFields",
             f"{size(compact(sample))} / "
             f"{size(compact(sample['metadata'].get('managedFields')))}"],
            [f"create {n:,} runs (4 creators)", f"{created_in:.1f} s"],
            ["until all Running", f"{running_in:.1f} s"],
            ["operator CPU since start", f"{cpu:.1f} s"],
            ["target", verdict(ok)],
        ],
        [
            "Node agent stopped, so every step pod stays Pending and every run keeps an "
            "active Job; a fresh operator; measured once all runs were Running and the "
            "operator had made no reconcile for 3 s" + ("" if quiet else " (it never went quiet)"),
            f"namespace deleted afterwards in {gone_in:.1f} s; agent restarted",
        ],
    )
    return Outcome([sec], [Summary(f"operator memory, {n:,} active runs", "<= 200 MiB RSS",
                                   f"{worst / mib:.0f} MiB "
                                   f"(peak {later.hwm_kib / mib:.0f})", ok)])


# --- scenario: hand-off ---------------------------------------------------------------------------


class StepClock:
    """When each step's Job appeared and when its pod's container terminated (watch times)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.job_added: dict[tuple[str, str], float] = {}
        self.terminated: dict[tuple[str, str], float] = {}

    @staticmethod
    def _key(obj: JSON) -> tuple[str, str] | None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        run, step = labels.get("taskforge.io/run"), labels.get("taskforge.io/step")
        return (run, step) if run and step else None

    def on_job(self, now: float, kind: str, obj: JSON) -> None:
        key = self._key(obj)
        if key is not None and kind == "ADDED":
            with self.lock:
                self.job_added.setdefault(key, now)

    def on_pod(self, now: float, kind: str, obj: JSON) -> None:
        key = self._key(obj)
        if key is None or kind == "DELETED":
            return
        statuses = (obj.get("status") or {}).get("containerStatuses") or []
        if any("terminated" in (s.get("state") or {}) for s in statuses):
            with self.lock:
                self.terminated.setdefault(key, now)


def scenario_handoff(b: Bench) -> Outcome:
    steps = 10
    wanted = b.args.handoffs
    runs = math.ceil(wanted / (steps - 1))
    ns = "bench-handoff"
    b.k.namespace(ns)
    b.k.workflow(ns, "chain", chain_spec(steps))
    step_names = [s["name"] for s in chain_spec(steps)["steps"]]
    clock = StepClock()
    tracker = RunTracker()
    walls: list[float] = []
    with (
        b.operator("handoff") as op,
        Watch(b.k, f"/api/v1/namespaces/{ns}/pods", clock.on_pod),
        Watch(b.k, f"/apis/batch/v1/namespaces/{ns}/jobs", clock.on_job),
        Watch(b.k, b.runs_path(ns), tracker.handle),
    ):
        names = [f"warmup-{i}" for i in range(b.args.warmup)] + [f"h-{i:03d}" for i in range(runs)]
        rec_before: Reconciles | None = None
        for name in names:
            if not name.startswith("warmup") and rec_before is None:
                op.wait_quiet(quiet=0.5, timeout=10)
                rec_before = Reconciles.scrape(op)
            t0 = time.monotonic()
            b.k.create_run(ns, name, "chain")
            if not tracker.wait_finished([name], timeout=60):
                raise RuntimeError(f"run {name} did not finish in 60s")
            if not name.startswith("warmup"):
                walls.append(tracker.finished_at[name] - t0)
            if tracker.phase.get(name) != "Succeeded":
                raise RuntimeError(f"run {name} ended {tracker.phase.get(name)}")
        time.sleep(0.3)
        assert rec_before is not None
        rec = Reconciles.scrape(op).minus(rec_before)
    handoffs: list[float] = []
    cycles: list[float] = []
    for name in names:
        if name.startswith("warmup"):
            continue
        for prev, nxt in itertools.pairwise(step_names):
            done = clock.terminated.get((name, prev))
            added = clock.job_added.get((name, nxt))
            if done is not None and added is not None:
                handoffs.append(added - done)
        for step in step_names:
            start = clock.job_added.get((name, step))
            end = clock.terminated.get((name, step))
            if start is not None and end is not None:
                cycles.append(end - start)
    p50, p99 = quantile(handoffs, 0.5), quantile(handoffs, 0.99)
    ok = p50 <= 0.050 and p99 <= 0.250
    sec = Section(
        f"Step hand-off: pod finished -> next Job created "
        f"({len(handoffs)} hand-offs, {runs} runs of a {steps}-step chain)",
        ["measure", "p50", "p90", "p99", "max"],
        [
            ["hand-off (target p50 <= 50 ms, p99 <= 250 ms)", *[
                ms(quantile(handoffs, q)) for q in (0.5, 0.9, 0.99, 1.0)]],
            ["cluster side: Job ADDED -> pod terminated", *[
                ms(quantile(cycles, q)) for q in (0.5, 0.9, 0.99, 1.0)]],
            ["run wall time (create -> Succeeded seen)", *[
                ms(quantile(walls, q)) for q in (0.5, 0.9, 0.99, 1.0)]],
            ["operator reconcile (histogram bucket)", rec.quantile_bound(0.5),
             rec.quantile_bound(0.9), rec.quantile_bound(0.99), ""],
        ],
        [
            f"target: {verdict(ok)}; {b.args.warmup} warm-up run(s) not counted; "
            "runs one after another",
            f"{rec.count:.0f} reconciles ({rec.count / max(1, runs * steps):.1f} per step), "
            f"mean {1000 * rec.seconds / max(1, rec.count):.1f} ms, "
            f"{rec.conflicts:.0f} status conflicts",
        ],
    )
    return Outcome([sec], [Summary(
        "step hand-off", "p50 <= 50 ms, p99 <= 250 ms",
        f"p50 {ms(p50)}, p99 {ms(p99)} (n={len(handoffs)})", ok)])


# --- scenario: throughput -------------------------------------------------------------------------


def scenario_throughput(b: Bench) -> Outcome:
    n = b.args.throughput_runs
    ns = "bench-throughput"
    b.k.namespace(ns)
    b.k.workflow(ns, "one", {"steps": [log_step("only")], "history": HISTORY})
    tracker = RunTracker()
    names = [f"tp-{i:04d}" for i in range(n)]
    op = b.operator("throughput")
    with op, Watch(b.k, b.runs_path(ns), tracker.handle):
        op.wait_quiet(quiet=0.5, timeout=10)
        rec_before = Reconciles.scrape(op)
        cpu0, cluster0, bench0 = op.cpu_seconds(), b.cluster_cpu(), bench_cpu_seconds()
        t0 = time.monotonic()
        created = b.k.create_runs(ns, "one", names, threads=4)
        created_in = time.monotonic() - t0
        finished = tracker.wait_finished(names, timeout=b.args.throughput_timeout)
        t_end = max(tracker.finished_at.values(), default=time.monotonic())
        cpu = op.cpu_seconds() - cpu0
        cluster1, bench_cpu = b.cluster_cpu(), bench_cpu_seconds() - bench0
        rec = Reconciles.scrape(op).minus(rec_before)
    done = [n_ for n_ in names if tracker.phase.get(n_) == "Succeeded"]
    elapsed = t_end - t0
    per_min = len(done) / elapsed * 60 if elapsed > 0 else math.nan
    latencies = [tracker.finished_at[n_] - created[n_] for n_ in names
                 if n_ in tracker.finished_at]
    ok = finished and per_min >= 600
    cluster_rows = [
        [f"CPU: {name}", f"{cluster1.get(name, 0) - start:.1f} s"]
        for name, start in sorted(cluster0.items())
    ]
    sec = Section(
        f"Throughput: {n} single-step runs, instant pods (target >= 600 runs/min)",
        ["measure", "value"],
        [
            ["runs Succeeded", f"{len(done)} of {n}" + ("" if finished else " (TIMED OUT)")],
            ["created in (4 creators)", f"{created_in:.1f} s"],
            ["first create -> last Succeeded", f"{elapsed:.1f} s"],
            ["runs per minute", f"{per_min:.0f}"],
            ["run latency p50 / p99 (create -> Succeeded)",
             f"{ms(quantile(latencies, 0.5))} / {ms(quantile(latencies, 0.99))}"],
            ["operator CPU", f"{cpu:.1f} s ({100 * cpu / elapsed:.0f}% of one core, "
                             f"{1000 * cpu / max(1, len(done)):.0f} ms per run)"],
            ["reconciles per run", f"{rec.count / max(1, len(done)):.1f}"],
            ["reconcile p50 / p99 (histogram bucket)",
             f"{rec.quantile_bound(0.5)} / {rec.quantile_bound(0.99)}"],
            ["reconcile mean", ms(rec.seconds / max(1, rec.count))],
            ["status conflicts", f"{rec.conflicts:.0f}"],
            *cluster_rows,
            ["CPU: this benchmark (watch, creators)", f"{bench_cpu:.1f} s"],
            ["target", verdict(ok)],
        ],
        [f"machine: {os.cpu_count()} CPUs shared by etcd, kube-apiserver, "
         "kube-controller-manager, the node agent, the operator and this benchmark"],
    )
    sections = [sec]
    return Outcome(sections, [Summary("single-step runs per minute", ">= 600",
                                      f"{per_min:.0f}", ok)])


# --- scenario: writes per step --------------------------------------------------------------------


OPERATOR_WRITES = {
    ("POST", "jobs"), ("DELETE", "jobs"),
    ("PATCH", "workflowruns/status"), ("PUT", "workflowruns/status"),
    ("PATCH", "workflowruns"), ("PUT", "workflowruns"), ("DELETE", "workflowruns"),
    ("PATCH", "workflows/status"), ("PUT", "workflows/status"), ("PATCH", "workflows"),
}


@dataclass
class WriteBatch:
    label: str
    steps: int
    runs: int
    operator: Counter[str]
    cluster: Counter[str]
    bench: Counter[str]
    seconds: float
    event_reasons: Counter[str]

    @property
    def operator_per_step(self) -> float:
        return sum(self.operator.values()) / self.steps


def settle_apiserver(b: Bench, quiet: float = 1.5, timeout: float = 20.0) -> Counter[WriteKey]:
    """Scrape until the write counters (leases and nodes aside) stop moving; the last scrape."""
    def relevant(c: Counter[WriteKey]) -> int:
        return sum(v for (verb, res), v in c.items()
                   if not res.startswith(("leases", "nodes")))

    deadline = time.monotonic() + timeout
    last = apiserver_writes(b.k.metrics())
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = apiserver_writes(b.k.metrics())
        if relevant(now) != relevant(last):
            since = time.monotonic()
        last = now
        if time.monotonic() - since >= quiet:
            break
    return last


def events_by_name(b: Bench, ns: str) -> dict[str, tuple[str, str]]:
    """name -> (reporting component, reason) of every Event in the namespace."""
    out: dict[str, tuple[str, str]] = {}
    for item in b.k.get(f"/api/v1/namespaces/{ns}/events").get("items") or []:
        component = (item.get("reportingComponent")
                     or (item.get("source") or {}).get("component") or "?")
        out[item["metadata"]["name"]] = (component, str(item.get("reason")))
    return out


def write_batch(b: Bench, op: Operator, ns: str, workflow: str, *, steps_per_run: int,
                runs: int, label_: str) -> WriteBatch:
    tracker = RunTracker()
    names = [f"{workflow}-{i:03d}" for i in range(runs)]
    with Watch(b.k, b.runs_path(ns), tracker.handle):
        op.wait_quiet(quiet=0.5, timeout=20)
        before = settle_apiserver(b)
        events_before = events_by_name(b, ns)
        t0 = time.monotonic()
        b.k.create_runs(ns, workflow, names, threads=4)
        if not tracker.wait_finished(names, timeout=120):
            raise RuntimeError(f"{label_}: runs did not finish")
        seconds = time.monotonic() - t0
        bad = [n for n in names if tracker.phase.get(n) != "Succeeded"]
        if bad:
            raise RuntimeError(f"{label_}: runs not Succeeded: {bad[:5]}")
        op.wait_quiet(quiet=1.0, timeout=30)
        after = settle_apiserver(b)
    new_events = [ev for name, ev in events_by_name(b, ns).items() if name not in events_before]
    operator_events = sum(1 for component, _ in new_events if component == OPERATOR_COMPONENT)
    reasons = Counter(f"{component}/{reason}" for component, reason in new_events)
    delta = after - before
    operator: Counter[str] = Counter()
    cluster: Counter[str] = Counter()
    bench: Counter[str] = Counter()
    for (verb, res), count in delta.items():
        key = f"{verb} {res}"
        if (verb, res) == ("POST", "workflowruns"):
            mine = min(count, runs)
            bench[key] += mine
            if count > mine:
                operator[key] += count - mine
        elif (verb, res) == ("POST", "events"):
            ours = min(count, operator_events)
            if ours:
                operator[key] += ours
            if count > ours:
                cluster[key] += count - ours
        elif (verb, res.split(" [")[0]) in OPERATOR_WRITES:
            operator[key] += count
        else:
            cluster[key] += count
    return WriteBatch(label_, steps_per_run * runs, runs, operator, cluster, bench, seconds,
                      reasons)


def scenario_writes(b: Bench) -> Outcome:
    batches: list[WriteBatch] = []
    chain_runs, single_runs = b.args.writes_chain_runs, b.args.writes_single_runs
    for events in (True, False):
        tag = "on" if events else "off"
        ns = f"bench-writes-{tag}"
        b.k.namespace(ns)
        b.k.workflow(ns, "chain", chain_spec(10))
        b.k.workflow(ns, "one", {"steps": [log_step("only")], "history": HISTORY})
        with b.operator(f"writes-events-{tag}", step_events=events) as op:
            batches.append(write_batch(b, op, ns, "chain", steps_per_run=10, runs=chain_runs,
                                       label_=f"10-step chain, events {tag}"))
            batches.append(write_batch(b, op, ns, "one", steps_per_run=1, runs=single_runs,
                                       label_=f"1-step runs, events {tag}"))
    keys_op = sorted({k for wb in batches for k in wb.operator})
    keys_cl = sorted({k for wb in batches for k in wb.cluster})
    keys_b = sorted({k for wb in batches for k in wb.bench})
    headers = ["writes per step", *[f"{wb.label} ({wb.runs} runs, {wb.steps} steps)"
                                   for wb in batches]]
    rows: list[list[str]] = []

    def add(prefix: str, keys: list[str], pick: Callable[[WriteBatch], Counter[str]]) -> None:
        for key in keys:
            rows.append([f"{prefix}: {key}", *[f"{pick(wb)[key] / wb.steps:.2f}"
                                               for wb in batches]])
        rows.append([f"**{prefix} total**",
                     *[f"**{sum(pick(wb).values()) / wb.steps:.2f}**" for wb in batches]])

    add("operator", keys_op, lambda wb: wb.operator)
    reasons = sorted({r for wb in batches for r in wb.event_reasons})
    for reason in reasons:
        component, _, why = reason.partition("/")
        who = "operator" if component == OPERATOR_COMPONENT else "cluster"
        rows.append([f"  ({who} Events: {why})",
                     *[f"{wb.event_reasons[reason] / wb.steps:.2f}" for wb in batches]])
    add("benchmark", keys_b, lambda wb: wb.bench)
    add("cluster", keys_cl, lambda wb: wb.cluster)
    rows.append(["batch wall time", *[f"{wb.seconds:.1f} s" for wb in batches]])

    def pick(steps: int, events: str) -> WriteBatch:
        return next(wb for wb in batches if wb.steps == steps * (
            chain_runs if steps == 10 else single_runs) and wb.label.endswith(f"events {events}"))

    sec = Section(
        "API writes per step (kube-apiserver apiserver_request_total; target <= 3 by the "
        "operator)",
        headers, rows,
        [
            "operator: POST/DELETE jobs, workflowruns and workflows (status) writes, and the "
            "Events whose reportingComponent is taskforge-operator; benchmark: the runs it "
            "created; cluster: everything else (job controller, node agent, leases)",
            "counters scraped once the API server had been quiet for 1.5 s before and after "
            "each batch; [code] marks requests that failed",
            "step Events on is the default (TASKFORGE_STEP_EVENTS=true)",
        ],
    )
    summary = []
    for steps, what in ((10, "10-step chain"), (1, "1-step runs")):
        on, off = pick(steps, "on"), pick(steps, "off")
        summary.append(Summary(
            f"API writes per step by the operator, {what}", "<= 3",
            f"{on.operator_per_step:.2f} with step Events (default), "
            f"{off.operator_per_step:.2f} without", on.operator_per_step <= 3))
    return Outcome([sec], summary)


# --- scenario: 1,000-step run size ----------------------------------------------------------------


def compact(obj: Any) -> int:
    return len(json.dumps(obj, separators=(",", ":")).encode())


def size(n: float) -> str:
    return f"{n:.0f} B" if n < 1024 else f"{n / 1024:.1f} KiB"


def managed_fields_rows(meta: JSON) -> list[list[str]]:
    """Size of each managedFields entry, and of the status.steps and workflowSpec it tracks."""
    rows = []
    for entry in meta.get("managedFields") or []:
        who = f"{entry.get('manager')} {entry.get('operation')}"
        if entry.get("subresource"):
            who += f" /{entry['subresource']}"
        rows.append([f"    entry: {who}", size(compact(entry))])
        status = (entry.get("fieldsV1") or {}).get("f:status") or {}
        for key in ("f:steps", "f:workflowSpec"):
            if key in status:
                rows.append([f"      of which {key[2:]}", size(compact(status[key]))])
    return rows


def scenario_size(b: Bench) -> Outcome:
    ns = "bench-size"
    n = 1000
    b.k.namespace(ns)
    b.k.workflow(ns, "wide", fan_out_spec(n))
    tracker = RunTracker()
    name = "wide-1"
    with b.operator("size") as op, Watch(b.k, b.runs_path(ns), tracker.handle):
        op.wait_quiet(quiet=0.5, timeout=10)
        writes0 = apiserver_writes(b.k.metrics())
        cpu0, cluster0 = op.cpu_seconds(), b.cluster_cpu()
        rec0 = Reconciles.scrape(op)
        t0 = time.monotonic()
        b.k.create_run(ns, name, "wide")
        if not tracker.wait_finished([name], timeout=b.args.size_timeout):
            raise RuntimeError(f"the {n}-step run did not finish in {b.args.size_timeout}s")
        wall = tracker.finished_at[name] - t0
        cpu, cluster1 = op.cpu_seconds() - cpu0, b.cluster_cpu()
        rec = Reconciles.scrape(op).minus(rec0)
        time.sleep(1.0)
        writes = apiserver_writes(b.k.metrics()) - writes0
        raw = b.k.get_raw(f"{b.runs_path(ns)}/{name}")
    run = json.loads(raw)
    status = run.get("status") or {}
    meta = run.get("metadata") or {}
    steps = status.get("steps") or {}
    phases = Counter(s.get("phase") for s in steps.values())
    size_kib = len(raw) / 1024
    ok = size_kib < 512 and status.get("phase") == "Succeeded"
    rest = {k: v for k, v in status.items() if k not in ("steps", "workflowSpec")}
    parts = [
        ["whole object (GET, JSON)", size(len(raw))],
        ["  metadata.managedFields", size(compact(meta.get("managedFields")))],
        *managed_fields_rows(meta),
        ["  spec", size(compact(run.get("spec")))],
        ["  status.workflowSpec (pinned copy)", size(compact(status.get("workflowSpec")))],
        ["  status.steps", f"{size(compact(steps))} "
                           f"({compact(steps) / max(1, len(steps)):.0f} B per step)"],
        ["  rest of status", size(compact(rest))],
        ["whole object without managedFields",
         size(len(raw) - compact(meta.get("managedFields")))],
        ["run phase / step phases", f"{status.get('phase')} / "
                                    + ", ".join(f"{k} {v}" for k, v in sorted(phases.items()))],
        ["run wall time (create -> Succeeded seen)", f"{wall:.1f} s ({n / wall:.0f} steps/s)"],
        ["status writes (PATCH workflowruns/status)",
         f"{writes.get(('PATCH', 'workflowruns/status'), 0)}"],
        ["Jobs created (POST jobs)", f"{writes.get(('POST', 'jobs'), 0)}"],
        ["operator reconciles, mean wall time",
         f"{rec.count:.0f}, {ms(rec.seconds / max(1, rec.count))}"],
        ["CPU: operator", f"{cpu:.1f} s"],
        *[[f"CPU: {proc}", f"{cluster1.get(proc, 0) - start:.1f} s"]
          for proc, start in sorted(cluster0.items())],
        ["target (< 512 KiB)", verdict(ok)],
    ]
    sec = Section(
        f"Size of a finished {n:,}-step run (1 root, {n - 11} parallel workers, 10 collectors; "
        "log steps, instant pods)", ["measure", "value"], parts,
        ["size is the JSON the API server returns for a GET, which is what it stores for a "
         "custom resource (etcd limit 1.5 MiB)"],
    )
    return Outcome([sec], [Summary(f"{n:,}-step run object size", "< 512 KiB",
                                   f"{size_kib:.0f} KiB (run took {wall:.0f} s)", ok)])


# --- main -----------------------------------------------------------------------------------------


def machine(b: Bench | None) -> list[str]:
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    version = "?"
    if b is not None and b.kube is not None:
        with contextlib.suppress(Exception):
            version = b.server_version()
    return [
        f"nproc {os.cpu_count()}" + (f" ({model})" if model else ""),
        f"memory {mem_kib / 1024 / 1024:.1f} GiB",
        f"Kubernetes {version} (local control plane, node agent in benchmark mode)",
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
    ]


RESULTS_HEADER = """# Benchmark results

Targets from DESIGN.md ("Targets"). Each `bench/bench_*.py` prints its tables; runs recorded with
the date and the machine are appended below (`bench/bench_operator.py --record` appends its own).

| what | target | why |
|---|---|---|
| step hand-off: pod finished -> next Job created | p50 ≤ 50 ms, p99 ≤ 250 ms | Argo requeues every 10 s by default |
| single-step runs completed per minute, one operator, 2 cores | ≥ 600 | Argo with default QPS: 270/min on a 50-node cluster |
| API writes per step (apiserver's own request counters) | ≤ 3 | one Job create plus batched status patches |
| operator memory with 1,000 active runs | ≤ 200 MiB RSS | Argo users report GiBs |
| 1,000-step run object size | < 512 KiB | etcd limit 1.5 MiB |
| cron: run created after its scheduled time | ≤ 1 s, never twice | CronJob checks every 10 s |
"""  # noqa: E501


def record(text: str) -> None:
    if not RESULTS.exists():
        RESULTS.write_text(RESULTS_HEADER)
    with RESULTS.open("a") as out:
        out.write("\n" + text)
    print(f"appended to {RESULTS}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                   help=f"which to run (default: all): {', '.join(SCENARIOS)}")
    p.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep the temp dir with all logs")
    p.add_argument("--profile", action="store_true",
                   help="run the operator under cProfile (not for memory); print its top functions")
    p.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    p.add_argument("--crds", type=Path, default=ROOT / "crds",
                   help="install the CRDs from this directory (to try a schema change)")
    p.add_argument("--handoffs", type=int, default=200, help="hand-offs to measure (>= 200)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs before the hand-offs")
    p.add_argument("--throughput-runs", type=int, default=300)
    p.add_argument("--throughput-timeout", type=float, default=150.0)
    p.add_argument("--memory-runs", type=int, default=1000)
    p.add_argument("--writes-chain-runs", type=int, default=10)
    p.add_argument("--writes-single-runs", type=int, default=30)
    p.add_argument("--size-timeout", type=float, default=180.0)
    args = p.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {SCENARIOS}")
    return args


RUNNERS: dict[str, Callable[[Bench], Outcome]] = {
    "memory": scenario_memory,
    "handoff": scenario_handoff,
    "throughput": scenario_throughput,
    "writes": scenario_writes,
    "size": scenario_size,
}


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.scenarios or s in args.scenarios]
    started = datetime.now(UTC)
    t0 = time.monotonic()
    outcomes: dict[str, Outcome] = {}
    failed: list[str] = []
    load_before = os.getloadavg()[0]
    busy0, ours0 = machine_busy_seconds(), own_and_children_cpu_seconds()
    with workdir(args.keep) as tmp:
        bench = Bench(tmp, args)
        try:
            bench.start()
            for name in chosen:
                print(f"== {name}", flush=True)
                s0 = time.monotonic()
                try:
                    outcome = RUNNERS[name](bench)
                except Exception as exc:
                    traceback.print_exc()
                    failed.append(f"{name}: {exc}")
                    continue
                outcomes[name] = outcome
                for section in outcome.sections:
                    print(section.render(), flush=True)
                print(f"({name} took {time.monotonic() - s0:.0f} s)\n", flush=True)
            info = machine(bench)
        finally:
            bench.cluster.stop()
    wall = time.monotonic() - t0
    busy = machine_busy_seconds() - busy0
    others = max(0.0, busy - (own_and_children_cpu_seconds() - ours0))
    info.append(
        f"load average before the run {load_before:.2f}; during the run other processes on the "
        f"machine used {others:.0f} CPU-s ({100 * others / wall:.0f}% of one CPU on average)"
    )
    summary = Section(
        "Summary (DESIGN.md targets)", ["what", "target", "measured", "verdict"],
        [[s.what, s.target, s.measured, verdict(s.ok)]
         for o in outcomes.values() for s in o.summary],
        [f"failed to run: {f}" for f in failed],
    )
    print(summary.render())
    print("machine: " + "; ".join(info))
    print(f"total {wall:.0f} s")
    if args.record:
        body = [f"## {started:%Y-%m-%d %H:%M} UTC — operator on the local control plane "
                "(`bench/bench_operator.py`)", "", *[f"* {line}" for line in info], "",
                summary.render()]
        body += [section.render() for o in outcomes.values() for section in o.sections]
        record("\n".join(body))
    if failed:
        return 1
    if args.strict and any(not s.ok for o in outcomes.values() for s in o.summary):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
