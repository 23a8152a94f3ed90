"""Pod volumes on the local node: configMap, secret and emptyDir, as files in the pod's directory.

The kubelet writes a ConfigMap's or a Secret's keys into a directory and mounts it into the
container. The agent does the same: it writes the files under the pod's state directory, and
the shim (`_shim.py`) bind-mounts each into the container's private mount namespace at its
`mountPath` (read-only when asked), so a step reads `/etc/app/settings.json` as it would on a
real node. Needs mount namespaces (probed at start); without them a pod with such mounts fails
with CreateContainerConfigError saying so. Other volume types (persistentVolumeClaim, ...) need
a real node and fail the same way, naming the type. A mount at /tmp is left out: every process
of the agent shares the host's /tmp already, as every step pod has an emptyDir there.

As for the termination-message file, a missing mount point is created on the host (an empty
directory is left there); the files themselves stay in the pod's directory.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from localcluster.envvars import ObjectSource

JSON = dict[str, Any]
# /tmp: shared with the host already (see above). The service account token: the API server's
# ServiceAccount admission adds a projected `kube-api-access-*` volume there to every pod that
# does not opt out (Jobs applied with kubectl, not the operator's, which opt out); the agent
# gives processes no in-cluster credentials, as before it mounted volumes at all.
SKIPPED_PATHS = ("/tmp", "/var/run/secrets/kubernetes.io/serviceaccount")


class VolumeError(Exception):
    """A volume cannot be set up (kubelet: CreateContainerConfigError / FailedMount)."""


def _files(kind: str, obj: JSON) -> dict[str, bytes]:
    if kind == "secret":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return out


def _write_source(kind: str, source: JSON, files: dict[str, bytes], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    default_mode = int(source.get("defaultMode", 0o644))
    items = source.get("items")
    chosen = [(i["key"], i["path"], i.get("mode", default_mode)) for i in items] if items else [
        (k, k, default_mode) for k in files]
    for key, rel, mode in chosen:
        if key not in files:
            if source.get("optional"):
                continue
            raise VolumeError(f"{kind} key {key!r} not found")
        if rel.startswith("/") or ".." in rel.split("/"):
            raise VolumeError(f"bad path {rel!r}")
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[key])
        path.chmod(int(mode))


def _materialize(pod: JSON, volume: JSON, objects: ObjectSource, base: Path) -> Path:
    name = str(volume["name"])
    target = base / name
    namespace = pod["metadata"].get("namespace", "default")
    if "emptyDir" in volume:
        target.mkdir(parents=True, exist_ok=True)
        return target
    for kind, key, read in (("configmap", "configMap", objects.config_map),
                            ("secret", "secret", objects.secret)):
        if key not in volume:
            continue
        source = volume[key]
        ref = source.get("name") if key == "configMap" else source.get("secretName")
        obj = read(namespace, str(ref))
        if obj is None and not source.get("optional"):
            raise VolumeError(f'volume "{name}": {kind} "{ref}" not found')
        _write_source(kind, source, _files(kind, obj or {}), target)
        return target
    kinds = sorted(k for k in volume if k != "name")
    raise VolumeError(f'volume "{name}": {", ".join(kinds) or "no source"} is not supported on'
                      " the local agent (configMap, secret and emptyDir are; use the real node)")


def container_mounts(pod: JSON, container: JSON, objects: ObjectSource, pod_dir: Path,
                     *, mount_namespaces: bool) -> list[JSON]:
    """The bind mounts of `container` for the shim: [{src, dst, readOnly}], files written."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or ()}
    mounts: list[JSON] = []
    for mount in container.get("volumeMounts") or ():
        dst = str(mount["mountPath"]).rstrip("/") or "/"
        if dst in SKIPPED_PATHS:
            continue
        volume = volumes.get(mount["name"])
        if volume is None:
            raise VolumeError(f'volumeMount "{mount["name"]}": no such volume')
        src = _materialize(pod, volume, objects, pod_dir / "volumes")
        if mount.get("subPath"):
            src = src / str(mount["subPath"])
            if not src.exists():
                src.mkdir(parents=True)
        mounts.append({"src": str(src), "dst": dst, "readOnly": bool(mount.get("readOnly"))})
    if mounts and not mount_namespaces:
        raise VolumeError("volume mounts need mount namespaces, which this machine lacks")
    return mounts
