"""The host-side state of the real node, made and unmade: interfaces, iptables, mounts, cgroups.

A real node changes the machine, unlike the agent: an interface with the node IP, the
CNI bridge and its veths, kube-proxy's and kubelet's iptables chains, overlay and tmpfs
mounts, network namespaces, cgroups, and containerd shims that outlive containerd by design.
``make cluster-down`` (and every test session) must leave none of it behind, so this module
both removes it and lists what is left (``leftovers()``), which the node's tests assert is
empty. Everything is found by a name or path this launcher owns (``tf-*`` links, chains
``KUBE-*``/``CNI-*``, rules commented ``taskforge-local-node``, mounts under the node's
workdir, cgroups under ``/taskforge``), never by a broad pattern over other people's state.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
from pathlib import Path

from localcluster.nodeconfig import (
    BRIDGE,
    CGROUP_ROOT,
    CLUSTER_RANGE,
    NODE_INTERFACE,
    NODE_IP,
    RULE_COMMENT,
)

log = logging.getLogger(__name__)
_MNT_DETACH = 2
_OWNED_CHAIN_PREFIXES = ("KUBE-", "CNI-")
_FORWARD_FILE = Path("/proc/sys/net/ipv4/ip_forward")


def _run(*argv: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


def link_exists(name: str) -> bool:
    return _run("ip", "link", "show", "dev", name).returncode == 0


def setup(state_dir: Path) -> None:
    """The node IP on its own interface, and FORWARD rules that keep pod traffic local.

    The CNI bridge plugin turns ``ip_forward`` on (it is the pods' gateway); without the
    DROP rule a pod's packet to any outside address would be routed out of the machine.
    The previous ``ip_forward`` value is saved in ``state_dir`` and restored on teardown.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    saved = state_dir / "ip_forward"
    if not saved.exists():
        saved.write_text(_FORWARD_FILE.read_text())
    if not link_exists(NODE_INTERFACE):
        # a bridge without ports: this kernel has no dummy-interface driver
        _run("ip", "link", "add", NODE_INTERFACE, "type", "bridge", check=True)
    _run("ip", "addr", "replace", f"{NODE_IP}/32", "dev", NODE_INTERFACE, check=True)
    _run("ip", "link", "set", NODE_INTERFACE, "up", check=True)
    make_cgroups()
    for rule in _isolation_rules():
        if _run("iptables", "-C", *rule).returncode != 0:
            _run("iptables", "-I", *rule[:1], "1", *rule[1:], check=True)


def _isolation_rules() -> list[list[str]]:
    comment = ["-m", "comment", "--comment", RULE_COMMENT]
    return [
        ["FORWARD", "-s", CLUSTER_RANGE, "!", "-d", CLUSTER_RANGE, *comment, "-j", "DROP"],
        ["FORWARD", "!", "-s", CLUSTER_RANGE, "-d", CLUSTER_RANGE, *comment, "-j", "DROP"],
    ]


def make_cgroups() -> None:
    """The kubelet's cgroup root in every v1 hierarchy (it refuses to start without it).

    cpuset needs its CPUs and memory nodes copied from the parent before anything can join.
    """
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if not hierarchy.is_dir() or hierarchy.is_symlink():
            continue
        top = hierarchy / CGROUP_ROOT.strip("/")
        top.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (top / name).exists() and not (top / name).read_text().strip():
                (top / name).write_text((hierarchy / name).read_text())


def kill_cgroup_processes() -> list[int]:
    """SIGKILL every process in the node's cgroups (containers and pause processes)."""
    killed: list[int] = []
    for procs in Path("/sys/fs/cgroup/pids").glob(f"{CGROUP_ROOT.strip('/')}/**/cgroup.procs"):
        with contextlib.suppress(OSError):
            for line in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(line), signal.SIGKILL)
                    killed.append(int(line))
    return killed


def shim_pids(address: Path) -> list[int]:
    """containerd-shim-runc-v2 processes serving ``address`` (they daemonize on purpose)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(address).encode() in argv:
            found.append(int(proc.name))
    return found


def mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    out = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix) or point == prefix[:-1]:
                out.append(point)
    return out


def unmount_under(root: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(3):  # a detached parent can reveal nothing new, but be sure
        points = sorted(set(mounts_under(root)), key=lambda p: p.count("/"), reverse=True)
        if not points:
            return
        for point in points:
            libc.umount2(point.encode(), _MNT_DETACH)


def remove_cgroups() -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / CGROUP_ROOT.strip("/")
        if not top.is_dir() or top.is_symlink():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                      reverse=True)
        for d in [*dirs, top]:
            with contextlib.suppress(OSError):
                d.rmdir()


def _iptables_cleanup(binary: str) -> None:
    """Delete every rule that jumps to an owned chain or carries our comment; then the chains."""
    for table in ("filter", "nat", "mangle", "raw"):
        dump = _run(f"{binary}-save", "-t", table).stdout.splitlines()
        for line in dump:
            if not line.startswith("-A "):
                continue
            parts = line.split()
            chain = parts[1]
            target = parts[parts.index("-j") + 1] if "-j" in parts else ""
            owned = (target.startswith(_OWNED_CHAIN_PREFIXES) or RULE_COMMENT in line)
            if owned and not chain.startswith(_OWNED_CHAIN_PREFIXES):
                # iptables-save quotes comments; pass the rule through a shell-free split
                _run(binary, "-t", table, "-D", *_unquote(parts[1:]))
        chains = [ln[1:].split()[0] for ln in dump if ln.startswith(":")]
        owned_chains = [c for c in chains if c.startswith(_OWNED_CHAIN_PREFIXES)]
        for chain in owned_chains:
            _run(binary, "-t", table, "-F", chain)
        for chain in owned_chains:
            _run(binary, "-t", table, "-X", chain)


def _unquote(parts: list[str]) -> list[str]:
    """Rejoin iptables-save's quoted words ("a b") into single arguments."""
    out: list[str] = []
    buf: list[str] | None = None
    for word in parts:
        if buf is not None:
            buf.append(word)
            if word.endswith('"'):
                out.append(" ".join(buf)[1:-1])
                buf = None
        elif word.startswith('"') and not (word.endswith('"') and len(word) > 1):
            buf = [word]
        else:
            out.append(word[1:-1] if word.startswith('"') and word.endswith('"') else word)
    return out


def teardown(state_dir: Path, kube_proxy: Path | None) -> None:
    """Remove the node's iptables rules, links and saved sysctl (after its processes)."""
    if kube_proxy is not None and kube_proxy.exists():
        _run(str(kube_proxy), "--cleanup")
    for binary in ("iptables", "ip6tables"):
        _iptables_cleanup(binary)
    for link in (BRIDGE, NODE_INTERFACE):
        if link_exists(link):
            _run("ip", "link", "del", link)
    saved = state_dir / "ip_forward"
    if saved.exists():
        with contextlib.suppress(OSError):
            _FORWARD_FILE.write_text(saved.read_text())
        saved.unlink()


def leftovers(workdir: Path, containerd_address: Path) -> list[str]:
    """What a stopped node left on the machine; empty when teardown was complete."""
    found = [f"mount {m}" for m in mounts_under(workdir)]
    found += [f"link {n}" for n in (BRIDGE, NODE_INTERFACE) if link_exists(n)]
    veths = _run("ip", "-o", "link", "show", "master", BRIDGE).stdout if link_exists(BRIDGE) else ""
    found += [f"veth {ln.split(':')[1].strip()}" for ln in veths.splitlines() if ln.strip()]
    found += [f"shim pid {p}" for p in shim_pids(containerd_address)]
    for binary in ("iptables", "ip6tables"):
        for line in _run(f"{binary}-save").stdout.splitlines():
            if ("KUBE-" in line or "CNI-" in line or RULE_COMMENT in line) and not line.startswith(
                "#"
            ):
                found.append(f"{binary}: {line}")
    procs = Path("/sys/fs/cgroup/pids") / CGROUP_ROOT.strip("/")
    if procs.is_dir():
        found.append(f"cgroup {procs}")
    return found
