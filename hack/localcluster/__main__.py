"""``python -m localcluster up|down|status|agent``: the local cluster from a shell.

``up`` starts a detached supervisor process that owns the cluster (so the
cluster outlives the shell command, and a crashed component is restarted), and
returns once the cluster is ready. The supervisor writes into ``--dir``
(default ``.local``): ``kubeconfig``, ``env`` (``source .local/env`` sets
KUBECONFIG and REDIS_URL), ``cluster.pid``, ``status.json`` and
``supervisor.log``; the cluster's own files are in ``--dir/cluster`` and are
fresh on every ``up``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("localcluster")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running_pid(root: Path) -> int | None:
    try:
        pid = int((root / "cluster.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _supervise(args: argparse.Namespace, root: Path) -> int:
    """Run the cluster in this process until SIGTERM/SIGINT, restarting dead parts."""
    from localcluster.cluster import LocalCluster  # noqa: PLC0415 - keep `agent` start-up lean

    ready_fd: int | None = args.ready_fd
    shutil.rmtree(root / "cluster", ignore_errors=True)
    cluster = LocalCluster(
        root / "cluster", bin_dir=args.bin_dir, with_agent=not args.no_agent,
        with_redis=not args.no_redis, image_config=args.image_config, node=args.node,
    )
    try:
        cluster.start(timeout=args.timeout)
    except Exception as exc:
        log.exception("cluster failed to start")
        if ready_fd is not None:
            os.write(ready_fd, f"error: {exc}\n".encode())
            os.close(ready_fd)
        return 1
    try:
        shutil.copyfile(cluster.kubeconfig, root / "kubeconfig")
        (root / "kubeconfig").chmod(0o600)
        env = {**cluster.env(), "KUBECONFIG": str(root / "kubeconfig")}
        (root / "env").write_text(shell_env(env, [str(cluster.bin_dir), str(TOOLS_DIR)]))
        (root / "cluster.pid").write_text(f"{os.getpid()}\n")
        (root / "status.json").write_text(json.dumps({
            "supervisor": os.getpid(),
            "server": cluster.server_url,
            "redis": cluster.redis_url,
            "bin_dir": str(cluster.bin_dir),
            "node": cluster.node_name,
            "node_mode": cluster.node_mode,
            "processes": {p.name: p.pid for p in cluster.processes()},
        }, indent=2))
        elapsed = cluster.started_in or 0.0
        log.info("cluster ready in %.1fs", elapsed)
        if ready_fd is not None:
            os.write(ready_fd, f"ok {elapsed:.1f}\n".encode())
            os.close(ready_fd)
        else:
            print(f"cluster ready in {elapsed:.1f}s; source {root / 'env'}", flush=True)
        while True:
            time.sleep(2)
            cluster.heal()
    except KeyboardInterrupt:
        return 0
    finally:
        log.info("stopping the cluster")
        cluster.stop()
        for name in ("cluster.pid", "status.json"):
            (root / name).unlink(missing_ok=True)


def cmd_up(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    pid = _running_pid(root)
    if pid is not None:
        print(f"already running (supervisor pid {pid}); source {root / 'env'}")
        return 0
    if args.foreground:
        signal.signal(signal.SIGTERM, lambda signum, _f: sys.exit(128 + signum))
        # also when started with `&` from a script, which leaves SIGINT ignored
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return _supervise(args, root)
    t0 = time.monotonic()
    read_fd, write_fd = os.pipe()
    argv = [sys.executable, "-m", "localcluster", "up", "--foreground", "--dir", str(root),
            "--ready-fd", str(write_fd), "--timeout", str(args.timeout)]
    for flag, value in (("--bin-dir", args.bin_dir), ("--image-config", args.image_config)):
        if value is not None:
            argv += [flag, str(value)]
    argv += ["--no-agent"] if args.no_agent else []
    argv += ["--node", args.node]
    argv += ["--no-redis"] if args.no_redis else []
    env = dict(os.environ)
    hack = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (hack, env.get("PYTHONPATH")) if p)
    with open(root / "supervisor.log", "ab") as out:
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         pass_fds=(write_fd,), start_new_session=True, env=env)
    os.close(write_fd)
    with os.fdopen(read_fd) as ready:
        answer = ready.read().strip()
    if not answer.startswith("ok"):
        tail = (root / "supervisor.log").read_text(errors="replace").splitlines()[-30:]
        print(answer or "supervisor died before the cluster was ready", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)
        return 1
    print(f"local cluster ready in {time.monotonic() - t0:.1f}s "
          f"(cluster start {answer.split()[1]}s); run: source {root / 'env'}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    pid = _running_pid(root)
    if pid is None:
        print("not running")
        return 0
    children: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        children = list(json.loads((root / "status.json").read_text())["processes"].values())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(pid):
        print(f"supervisor {pid} did not stop; killing it", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)  # its children die with it (PR_SET_PDEATHSIG)
    while any(_pid_alive(c) for c in children if c) and time.monotonic() < deadline + 10:
        time.sleep(0.1)
    (root / "cluster.pid").unlink(missing_ok=True)
    left = _real_node_leftovers(root / "cluster")
    if left:
        print("the real node left behind:\n  " + "\n  ".join(left), file=sys.stderr)
        return 1
    print("stopped")
    return 0


def _real_node_leftovers(workdir: Path) -> list[str]:
    """After a real node's supervisor is gone: clean what a crash left, report the rest."""
    if not (workdir / "node").is_dir():
        return []
    from localcluster.realnode import RealNode  # noqa: PLC0415 - only for a real node

    node = RealNode(workdir, workdir / "kubeconfig", "local-node")
    node.stop()  # idempotent: nothing runs any more, it removes what is left
    return node.leftovers()


def cmd_status(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    pid = _running_pid(root)
    if pid is None:
        print("not running")
        return 1
    status = json.loads((root / "status.json").read_text())
    print(f"supervisor  pid {pid}")
    for name, child in status["processes"].items():
        print(f"{name:<24}pid {child} {'running' if _pid_alive(child) else 'DEAD'}")
    print(f"server      {status['server']}")
    print(f"redis       {status['redis']}")
    kubectl = Path(status["bin_dir"]) / "kubectl"
    result = subprocess.run(
        [str(kubectl), "--kubeconfig", str(root / "kubeconfig"), "get", "--raw", "/readyz"],
        capture_output=True, text=True, check=False,
    )
    print(f"readyz      {(result.stdout or result.stderr).strip()}")
    return 0 if result.returncode == 0 else 1


TOOLS_DIR = Path(sys.executable).parent
"""The venv's bin: `taskforge` and `taskforge-operator` live next to the interpreter."""


def shell_env(env: dict[str, str], path_dirs: list[str]) -> str:
    """The `.local/env` file: the cluster's variables, and PATH with kubectl and helm (the
    control plane's binaries) and the `taskforge` CLI (the venv's bin) in front."""
    lines = [f"export {k}={v}\n" for k, v in env.items()]
    lines.append(f"export PATH={':'.join(path_dirs)}:$PATH\n")
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["agent"]:
        from localcluster.agent import main as agent_main  # noqa: PLC0415

        agent_main(argv[1:])
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m localcluster")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the local cluster (detached unless --foreground)")
    up.add_argument("--dir", default=".local")
    up.add_argument("--foreground", action="store_true")
    up.add_argument("--bin-dir", type=Path)
    up.add_argument("--image-config", type=Path)
    up.add_argument("--no-agent", action="store_true")
    up.add_argument("--node", choices=("agent", "kubelet"), default="agent",
                    help="the node agent (fast, host processes) or a real kubelet + containerd")
    up.add_argument("--no-redis", action="store_true")
    up.add_argument("--timeout", type=float, default=120.0)
    up.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    for name, text in (("down", "stop the cluster and wait until it is gone"),
                       ("status", "show the cluster's processes and readiness")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--dir", default=".local")
        p.add_argument("--timeout", type=float, default=30.0)
    sub.add_parser("agent", help="run the local node agent (see `agent --help`)")
    args = parser.parse_args(argv)
    handlers = {"up": cmd_up, "down": cmd_down, "status": cmd_status}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
