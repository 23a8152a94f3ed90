"""Exec shim between the agent and a container's command (stdlib only, run with -I -S).

It does in the child what ``subprocess``'s ``preexec_fn`` could, but without
running Python in a forked copy of the multi-threaded agent (unsafe: a lock held
by another thread at fork time deadlocks the child):

1. ``PR_SET_PDEATHSIG=SIGKILL``: the process dies if the agent dies;
2. a private mount namespace in which the container's own termination-message
   file is bind-mounted over ``terminationMessagePath`` (default
   ``/dev/termination-log``), so every container sees its own file at the path
   Kubernetes promises, while the host and other containers are unaffected;
3. ``chdir`` to the working directory (created if missing, as runtimes do);
4. ``execvpe`` with the PATH of the container's environment. If that fails, the
   reason goes to ``start_error_file`` and the exit code is 128 (like a runtime's
   StartError).

Argument: one JSON object (see ``PodWorker._spawn``). ``{"probe": true, ...}``
only checks that the mount namespace works here.
"""

import ctypes
import json
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_REMOUNT = 32
MS_RDONLY = 1


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def private_namespace(libc: ctypes.CDLL) -> None:
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")


def bind_volume(libc: ctypes.CDLL, mount: dict) -> None:  # type: ignore[type-arg]
    """A pod volume's directory (or file, with subPath) over its mountPath (volumes.py)."""
    src, dst = mount["src"], mount["dst"]
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    elif not os.path.exists(dst):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "a"):
            pass
    _check(libc.mount(src.encode(), dst.encode(), None, MS_BIND, None), f"bind {dst}")
    if mount.get("readOnly"):
        _check(libc.mount(None, dst.encode(), None, MS_BIND | MS_REMOUNT | MS_RDONLY, None),
               f"remount {dst} read-only")


def bind_termination_file(libc: ctypes.CDLL, src: str, dst: str) -> None:
    parent = os.path.dirname(dst)
    if parent:
        os.makedirs(parent, exist_ok=True)
    if not os.path.exists(dst):
        # The mount point must exist; an empty file is left on the host filesystem.
        with open(dst, "a"):
            pass
    _check(libc.mount(src.encode(), dst.encode(), None, MS_BIND, None), f"bind {dst}")


def main() -> None:
    spec = json.loads(sys.argv[1])
    libc = _libc()
    if spec.get("probe"):
        private_namespace(libc)
        bind_termination_file(libc, spec["tm_src"], spec["tm_dst"])
        with open(spec["tm_dst"]) as f:
            sys.exit(0 if f.read() == spec["expect"] else 3)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != spec["parent"]:
        sys.exit(137)  # the agent died before prctl took effect
    if spec.get("tm_dst"):
        try:
            private_namespace(libc)
            bind_termination_file(libc, spec["tm_src"], spec["tm_dst"])
        except OSError as exc:
            sys.stderr.write(f"local-agent: termination-message bind mount failed: {exc}\n")
    try:
        for mount in spec.get("mounts") or ():
            bind_volume(libc, mount)
    except OSError as exc:
        with open(spec["start_error_file"], "w") as f:
            f.write(f"volume mount failed: {exc}")
        sys.exit(128)
    argv = spec["argv"]
    try:
        os.makedirs(spec["cwd"], exist_ok=True)
        os.chdir(spec["cwd"])
        os.execvpe(argv[0], argv, os.environ)
    except OSError as exc:
        message = f"failed to start {argv[0]!r}: {exc.strerror or exc}"
        if isinstance(exc, FileNotFoundError):
            message = f'exec: "{argv[0]}": executable file not found in $PATH'
        with open(spec["start_error_file"], "w") as f:
            f.write(message)
        sys.stderr.write(message + "\n")
        sys.exit(128)


if __name__ == "__main__":
    main()
