"""Pod status documents in the shape a kubelet writes them.

Controllers read these fields, not our intentions: the Job controller counts
``phase`` and the ``restartCount`` of containers, the operator reads
``state.terminated.message`` for step results, ``kubectl wait`` reads
conditions. The agent keeps one ``PodStatusModel`` per pod and merge-patches the
whole status at each transition (merge-patch replaces lists, so a status is
always complete and self-consistent; there is no other writer of pod status).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]
LOCAL_IP = "127.0.0.1"
MAX_MESSAGE_BYTES = 4096


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerStatus:
    name: str
    image: str
    init: bool = False
    restart_count: int = 0
    state: JSON = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JSON = field(default_factory=dict)
    container_id: str = ""

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def terminated(self) -> JSON | None:
        value = self.state.get("terminated")
        return value if isinstance(value, dict) else None

    @property
    def succeeded(self) -> bool:
        term = self.terminated
        return term is not None and term.get("exitCode") == 0

    def set_waiting(self, reason: str, message: str = "") -> None:
        waiting: JSON = {"reason": reason}
        if message:
            waiting["message"] = message
        self.state = {"waiting": waiting}

    def set_running(self, container_id: str) -> None:
        self.container_id = container_id
        self.state = {"running": {"startedAt": now()}}

    def set_terminated(
        self, exit_code: int, reason: str, message: str = "", started_at: str | None = None
    ) -> None:
        started = started_at or (self.state.get("running") or {}).get("startedAt") or now()
        term: JSON = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now(),
        }
        if message:
            term["message"] = truncate_message(message)
        if self.container_id:
            term["containerID"] = self.container_id
        self.state = {"terminated": term}

    def restart(self) -> None:
        """The terminated state becomes lastState, as before a kubelet restart."""
        self.last_state = self.state
        self.restart_count += 1

    def to_json(self) -> JSON:
        ready = self.running if not self.init else self.succeeded
        out: JSON = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": ready,
            "started": self.running,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


def truncate_message(message: str) -> str:
    raw = message.encode()
    if len(raw) <= MAX_MESSAGE_BYTES:
        return message
    return raw[:MAX_MESSAGE_BYTES].decode(errors="ignore")


@dataclass
class PodStatusModel:
    """Everything the agent reports for one pod."""

    init_containers: list[ContainerStatus]
    containers: list[ContainerStatus]
    start_time: str = field(default_factory=now)
    phase: str = "Pending"
    reason: str | None = None
    message: str | None = None
    _transitions: dict[str, tuple[str, str]] = field(default_factory=dict)

    @staticmethod
    def for_pod(pod: JSON) -> PodStatusModel:
        spec = pod["spec"]
        inits = [
            ContainerStatus(c["name"], c.get("image", ""), init=True)
            for c in spec.get("initContainers") or []
        ]
        mains = [ContainerStatus(c["name"], c.get("image", "")) for c in spec["containers"]]
        for c in mains if inits else []:
            c.set_waiting("PodInitializing")
        start = (pod.get("status") or {}).get("startTime") or now()
        return PodStatusModel(inits, mains, start_time=start)

    @property
    def all_containers(self) -> list[ContainerStatus]:
        return self.init_containers + self.containers

    def _condition(self, kind: str, ok: bool, reason: str = "", message: str = "") -> JSON:
        status = "True" if ok else "False"
        previous = self._transitions.get(kind)
        if previous is None or previous[0] != status:
            self._transitions[kind] = (status, now())
        cond: JSON = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self._transitions[kind][1],
        }
        if reason and not ok:
            cond["reason"] = reason
        if message and not ok:
            cond["message"] = message
        return cond

    def to_json(self) -> JSON:
        finished = self.phase in ("Succeeded", "Failed")
        inits_done = all(c.succeeded for c in self.init_containers)
        not_ready = [c.name for c in self.containers if not c.running]
        ready = not finished and any(c.running for c in self.containers)
        ready_reason = "PodCompleted" if finished else "ContainersNotReady"
        ready_message = (
            "" if finished else f"containers with unready status: [{' '.join(not_ready)}]"
        )
        init_message = "containers with incomplete status: [" + " ".join(
            c.name for c in self.init_containers if not c.succeeded
        ) + "]"
        status: JSON = {
            "phase": self.phase,
            "conditions": [
                self._condition("PodReadyToStartContainers", not finished or ready),
                self._condition(
                    "Initialized", inits_done or finished, "ContainersNotInitialized", init_message
                ),
                self._condition("Ready", ready, ready_reason, ready_message),
                self._condition("ContainersReady", ready, ready_reason, ready_message),
                self._condition("PodScheduled", True),
            ],
            "hostIP": LOCAL_IP,
            "hostIPs": [{"ip": LOCAL_IP}],
            "podIP": LOCAL_IP,
            "podIPs": [{"ip": LOCAL_IP}],
            "startTime": self.start_time,
            "containerStatuses": [c.to_json() for c in self.containers],
            "reason": self.reason,
            "message": self.message,
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.to_json() for c in self.init_containers]
        return status
