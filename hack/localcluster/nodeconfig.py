"""Addresses and configuration files of the real node (``NODE=kubelet``, see realnode.py).

Every address comes from the benchmarking range 198.18.0.0/15, which no real network
routes, so nothing the node does can reach or collide with another network:

* 198.18.0.1/32, on a port-less bridge ``tf-node0``, is the node's IP. The apiserver,
  kubelet and kube-proxy listen there, so pods reach the apiserver (through the
  ``kubernetes`` Service) and host test servers, and nothing listens on the host's NIC.
* 198.18.1.0/24 is the pod network: the CNI bridge ``tf-cni0`` (gateway 198.18.1.1),
  host-local IPAM, no masquerading.
* 198.19.0.0/24 holds Service ClusterIPs (kube-proxy, iptables mode).

The files follow what kind writes for its nodes where that fits a one-machine node: the
cgroupfs driver on the machine's cgroup v1, eviction thresholds at 0% (the eviction manager
cannot stat this VM's root device), image GC off (imported images are never pulled again).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

NODE_IP = "198.18.0.1"
NODE_INTERFACE = "tf-node0"
BRIDGE = "tf-cni0"
POD_CIDR = "198.18.1.0/24"
POD_GATEWAY = "198.18.1.1"
SERVICE_CIDR = "198.19.0.0/24"
CLUSTER_RANGE = "198.18.0.0/15"
# The iptables comment on the rules this launcher adds itself (cleanup finds them by it).
RULE_COMMENT = "taskforge-local-node"
PAUSE_IMAGE = "localhost/taskforge-pause:busybox"
CNI_BIN_DIR = "/usr/lib/cni"
# kubelet's cgroup parent; everything the node creates in a cgroup hierarchy is below it.
CGROUP_ROOT = "/taskforge"


def containerd_config(workdir: Path, bin_dir: Path) -> str:
    """containerd v2 config (version 3): its state under ``workdir``, runc from ``bin_dir``.

    ``restrict_oom_score_adj``: root here lacks CAP_SYS_RESOURCE, and without it every
    sandbox fails writing /proc/self/oom_score_adj. ``netns_mounts_under_state_dir`` keeps
    the pods' network-namespace mounts under ``workdir`` too, so stopping the node can find
    and remove every mount it made.
    """
    d = workdir / "containerd"
    return f"""version = 3
root = "{d / 'root'}"
state = "{d / 'state'}"

[grpc]
  address = "{d / 'containerd.sock'}"

[ttrpc]
  address = "{d / 'containerd.sock.ttrpc'}"

[metrics]
  address = ""

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "{PAUSE_IMAGE}"

  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "{bin_dir / 'runc'}"
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["{CNI_BIN_DIR}"]
      conf_dir = "{workdir / 'cni' / 'net.d'}"

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
"""


def cni_config(workdir: Path) -> str:
    """bridge + host-local + portmap, without masquerading: pod traffic never leaves."""
    config: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "taskforge",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(workdir / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(config, indent=2)


def kubelet_config(
    *, sock: Path, port: int, healthz_port: int, ca: Path, cert: Path, key: Path
) -> str:
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # the machine's cgroups are v1
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": CGROUP_ROOT,
        "containerRuntimeEndpoint": f"unix://{sock}",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "resolvConf": "",
        "failSwapOn": False,
        "podCIDR": POD_CIDR,
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "evictionHard": {
            "memory.available": "0%", "nodefs.available": "0%",
            "nodefs.inodesFree": "0%", "imagefs.available": "0%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
        "shutdownGracePeriodCriticalPods": "0s",
        "containerLogMaxSize": "10Mi",
        "logging": {"verbosity": 1},
    }
    return yaml.safe_dump(config, sort_keys=False)


def kube_proxy_config(
    *, kubeconfig: Path, node_name: str, healthz_port: int, metrics_port: int
) -> str:
    """iptables mode; NodePorts only on the node IP; conntrack sysctls left as they are."""
    config: dict[str, Any] = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": node_name,
        "bindAddress": NODE_IP,
        "clusterCIDR": POD_CIDR,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "iptables": {"localhostNodePorts": False},
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }
    return yaml.safe_dump(config, sort_keys=False)
