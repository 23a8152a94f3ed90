"""`make demo`: run Taskforge for real on this machine and watch a workflow run.

Starts the local control plane, the node agent and Redis, installs the CRDs,
starts the real operator, applies examples/diamond.yaml (a Workflow and a run)
and shows the run's steps live until it ends. Everything stays up until Ctrl-C,
so `kubectl` and the `taskforge` CLI can be pointed at it meanwhile.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from rich.console import Console
from rich.live import Live
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))

from localcluster.admission import wait_for_admission_webhook  # noqa: E402
from localcluster.cluster import LocalCluster  # noqa: E402
from localcluster.process import free_port  # noqa: E402

EXAMPLE = ROOT / os.environ.get("TASKFORGE_DEMO_EXAMPLE", "examples/diamond.yaml")
RUN_TIMEOUT_SECONDS = 300  # the example ends in seconds; anything near this is a fault
PHASE_STYLE = {
    "Succeeded": "green",
    "Failed": "red",
    "Running": "yellow",
    "Retrying": "magenta",
    "Skipped": "dim",
    "Cancelled": "dim",
    "Pending": "white",
    "Waiting": "cyan",
}
console = Console()


def kubectl(cluster: LocalCluster, *args: str) -> str:
    argv = [str(cluster.kubectl_path()), "--kubeconfig", str(cluster.kubeconfig), *args]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def install_crds(cluster: LocalCluster) -> None:
    kubectl(cluster, "apply", "--server-side", "-f", str(ROOT / "crds"))
    for _ in range(100):
        try:
            kubectl(
                cluster,
                "wait",
                "--for=condition=established",
                "--timeout=10s",
                "crd/workflows.taskforge.io",
                "crd/workflowruns.taskforge.io",
            )
            return
        except subprocess.CalledProcessError:
            time.sleep(0.3)
    raise SystemExit("the CRDs did not become established")


def start_operator(cluster: LocalCluster, log_path: Path) -> subprocess.Popen[bytes]:
    admission_port = free_port()
    env = dict(
        os.environ,
        KUBECONFIG=str(cluster.kubeconfig),
        TASKFORGE_EXECUTOR_IMAGE="taskforge-executor:dev",
        TASKFORGE_HTTP_PORT=str(free_port()),
        TASKFORGE_ADMISSION="local",
        TASKFORGE_ADMISSION_PORT=str(admission_port),
    )
    if cluster.redis_url:
        env["REDIS_URL"] = cluster.redis_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskforge.handlers.main"],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    # Runs are created only once the operator's admission webhook records their creator.
    wait_for_admission_webhook(cluster.kubeconfig, admission_port)
    return proc


def seconds_between(start: str | None, end: str | None) -> str:
    if not start:
        return ""
    def parse(t: str) -> datetime:
        return datetime.fromisoformat(t.replace("Z", "+00:00"))

    stop = parse(end) if end else datetime.now(UTC)
    return f"{(stop - parse(start)).total_seconds():.1f}s"


def render(run: dict[str, Any]) -> Table:
    status = run.get("status") or {}
    phase = status.get("phase", "Pending")
    table = Table(
        title=f"WorkflowRun {run['metadata']['name']}: "
        f"[{PHASE_STYLE.get(phase, 'white')}]{phase}[/] "
        f"{status.get('progress', '')}  {status.get('duration', '')}"
    )
    for column in ("step", "phase", "attempts", "duration", "outputs / message"):
        table.add_column(column)
    spec = status.get("workflowSpec") or {}
    order = [s["name"] for s in spec.get("steps", []) + spec.get("finally", [])]
    steps = status.get("steps") or {}
    for name in order or sorted(steps):
        step = steps.get(name) or {}
        p = step.get("phase", "Pending")
        detail = step.get("message") or str(step.get("outputs") or "")
        table.add_row(
            name,
            f"[{PHASE_STYLE.get(p, 'white')}]{p}[/]",
            str(step.get("attempts", 0)),
            seconds_between(step.get("startedAt"), step.get("finishedAt")),
            detail[:70],
        )
    return table


def main() -> None:
    workdir = Path(os.environ.get("TASKFORGE_DEMO_DIR", ROOT / ".local" / "demo"))
    workdir.mkdir(parents=True, exist_ok=True)
    console.print(
        "[bold]Taskforge demo[/]: starting the local control plane, node agent and Redis…"
    )
    cluster = LocalCluster(workdir / "cluster")
    cluster.start()
    operator: subprocess.Popen[bytes] | None = None
    try:
        console.print(
            f"  control plane ready in {cluster.started_in:.1f}s; Redis at {cluster.redis_url}"
        )
        install_crds(cluster)
        console.print("  CRDs installed: workflows.taskforge.io, workflowruns.taskforge.io")
        log_path = workdir / "operator.log"
        operator = start_operator(cluster, log_path)
        console.print(f"  operator started (pid {operator.pid}, log {log_path})")
        kubectl(cluster, "delete", "--ignore-not-found", "-f", str(EXAMPLE))
        console.print(kubectl(cluster, "apply", "-f", str(EXAMPLE)).strip())
        api = client.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig)))
        run_name = next(
            line.split()[0].split("/")[1]
            for line in kubectl(cluster, "get", "workflowruns", "-o", "name").splitlines()
        )
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        with Live(console=console, refresh_per_second=8) as live:
            while True:
                run = api.get_namespaced_custom_object(
                    "taskforge.io", "v1alpha1", "default", "workflowruns", run_name
                )
                live.update(render(run))
                if (run.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Cancelled"):
                    break
                if operator.poll() is not None:
                    raise SystemExit(f"the operator exited; see {log_path}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"the run did not end in {RUN_TIMEOUT_SECONDS}s; "
                                     f"see {log_path}")
                time.sleep(0.15)
        console.print("\nEverything stays up until Ctrl-C. In another shell:")
        # soft_wrap: a narrow terminal must not break the lines people copy into a shell
        console.print(f"  [bold]export KUBECONFIG={cluster.kubeconfig}[/]", soft_wrap=True)
        console.print(f"  export PATH={cluster.bin_dir}:$PATH", soft_wrap=True)
        console.print("  kubectl get tfw,tfr,jobs   # workflows.taskforge.io, workflowruns...")
        console.print(f"  .venv/bin/taskforge get {run_name}")
        console.print("  kubectl create -f examples/retry-backoff.yaml")
        if os.environ.get("TASKFORGE_DEMO_EXIT"):  # for tests and CI: end with the run
            phase = (run.get("status") or {}).get("phase")
            if phase != "Succeeded":
                raise SystemExit(f"the demo run ended {phase}; see {log_path}")
            return
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping…")
        if operator is not None and operator.poll() is None:
            operator.terminate()
            operator.wait(15)
        cluster.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    main()
