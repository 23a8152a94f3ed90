"""Taskforge's local Kubernetes: a real control plane from Go-built binaries, a node
agent standing in for the kubelet, and Redis, for tests, benchmarks and demos.

See DESIGN.md, "The local control plane", and ``python -m localcluster --help``.
"""

from localcluster.cluster import AgentProcess, LocalCluster, default_bin_dir
from localcluster.controlplane import ControlPlane
from localcluster.images import BENCH_INSTANT_IMAGE, CANNOT_RUN_REASON
from localcluster.redis_server import RedisServer

__all__ = [
    "BENCH_INSTANT_IMAGE",
    "CANNOT_RUN_REASON",
    "AgentProcess",
    "ControlPlane",
    "LocalCluster",
    "RedisServer",
    "default_bin_dir",
]
