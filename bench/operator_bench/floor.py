"""The floor: the least a controller must do to run our workflows, for `make bench` to compare.

A minimal watch-and-create controller, run as its own process like the operator:

* a run is a ConfigMap labelled `floor.taskforge.io/run` with `data.steps` (a chain length);
* a watch on those ConfigMaps creates the first step's Job when a run appears;
* one pod watch creates the next step's Job the moment the previous step's container has
  terminated with exit code 0, and after the last step marks the run done with one patch
  (`data.phase: Succeeded`), which is what the benchmark waits for, as it waits for a
  WorkflowRun's status.phase.

Its Jobs are the operator's own (`adapters.jobs.build_job` for a log step on the agent's
instant image), owned by the run's ConfigMap, with the labels renamed so the operator does
not see them. No status, no retries, no limits, no templates, no restart safety: it is a
reference for latency and throughput, not a workflow engine. Per step it makes one write (the
Job), per run one more (the done mark).

Usage: python -m bench.operator_bench.floor --kubeconfig PATH --namespace NS
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config
from taskforge.adapters.jobs import JobSettings, RunRef, build_job
from taskforge.engine.actions import CreateJob
from taskforge.engine.naming import job_labels, job_name

RUN_LABEL = "floor.taskforge.io/run"
INDEX_LABEL = "floor.taskforge.io/index"
STEPS_LABEL = "floor.taskforge.io/steps"
INSTANT_IMAGE = "taskforge.io/bench-instant"
JSON = dict[str, Any]


def _floor_labels(labels: dict[str, str]) -> dict[str, str]:
    """taskforge.io/x -> floor.taskforge.io/x: the same size, invisible to the operator."""
    return {("floor." + k if k.startswith("taskforge.io/") else k): v for k, v in labels.items()}


class Floor:
    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig),  # type: ignore[no-untyped-call]
                                client_configuration=cfg)
        self.base = str(cfg.host)
        self.tls = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        self.tls.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
        # Plain JSON over keep-alive connections: the least a write can cost from Python.
        self.http = httpx.Client(base_url=self.base, verify=self.tls, timeout=30.0,
                                 limits=httpx.Limits(max_connections=8))
        self.ns = namespace
        self.settings = JobSettings(executor_image=INSTANT_IMAGE)
        self.pool = ThreadPoolExecutor(8)
        self.lock = threading.Lock()
        self.started: set[str] = set()
        self.handled: set[tuple[str, int]] = set()
        self.uids: dict[str, str] = {}
        self.stop = threading.Event()

    # --- actions ---------------------------------------------------------------------------

    def job(self, run: str, uid: str, index: int, steps: int) -> JSON:
        step = f"s{index:02d}"
        action = CreateJob(
            step=step, attempt=1, job_name=job_name(run, step, 1), step_type="log",
            config={"message": f"bench step {step} of {run}"}, timeout_seconds=None,
            labels={**job_labels("floor", run, step, 1), INDEX_LABEL.removeprefix("floor."):
                    str(index), STEPS_LABEL.removeprefix("floor."): str(steps)},
        )
        manifest = build_job(action, RunRef(name=run, namespace=self.ns, uid=uid),
                             self.settings)
        meta = manifest["metadata"]
        meta["labels"] = _floor_labels(meta["labels"])
        template = manifest["spec"]["template"]["metadata"]
        template["labels"] = _floor_labels(template["labels"])
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": run,
                                    "uid": uid, "controller": True,
                                    "blockOwnerDeletion": True}]
        return manifest

    def create(self, run: str, uid: str, index: int, steps: int) -> None:
        try:
            resp = self.http.post(f"/apis/batch/v1/namespaces/{self.ns}/jobs",
                                  params={"fieldManager": "floor"},
                                  json=self.job(run, uid, index, steps))
            if resp.status_code not in (201, 409):
                raise RuntimeError(f"{resp.status_code} {resp.text[:200]}")
        except Exception as exc:
            print(f"floor: create {run}/{index}: {exc}", file=sys.stderr, flush=True)

    def finish(self, run: str) -> None:
        try:
            self.http.patch(f"/api/v1/namespaces/{self.ns}/configmaps/{run}",
                            content=json.dumps({"data": {"phase": "Succeeded"}}),
                            headers={"Content-Type": "application/merge-patch+json"},
                            ).raise_for_status()
        except Exception as exc:
            print(f"floor: finish {run}: {exc}", file=sys.stderr, flush=True)

    # --- watch handlers --------------------------------------------------------------------

    def on_run(self, kind: str, obj: JSON) -> None:
        meta = obj["metadata"]
        if kind != "ADDED" or (obj.get("data") or {}).get("phase"):
            return
        with self.lock:
            if meta["name"] in self.started:
                return
            self.started.add(meta["name"])
            self.uids[meta["name"]] = meta["uid"]
        steps = int((obj.get("data") or {}).get("steps", "1"))
        self.pool.submit(self.create, meta["name"], meta["uid"], 0, steps)

    def on_pod(self, kind: str, obj: JSON) -> None:
        if kind == "DELETED":
            return
        labels = obj["metadata"].get("labels") or {}
        run, index = labels.get(RUN_LABEL), labels.get(INDEX_LABEL)
        if run is None or index is None:
            return
        for status in (obj.get("status") or {}).get("containerStatuses") or []:
            done = (status.get("state") or {}).get("terminated")
            if done is not None:
                break
        else:
            return
        key = (run, int(index))
        with self.lock:
            if key in self.handled:
                return
            self.handled.add(key)
        if done.get("exitCode") != 0:
            return
        steps = int(labels.get(STEPS_LABEL, "1"))
        if key[1] + 1 < steps:
            uid = self.uids.get(run)  # the run's ConfigMap, seen by on_run: the Jobs' owner
            if uid is not None:
                self.pool.submit(self.create, run, uid, key[1] + 1, steps)
        else:
            self.pool.submit(self.finish, run)

    # --- watches ---------------------------------------------------------------------------

    def watch(self, path: str, selector: str, handle: Any) -> None:
        http = httpx.Client(base_url=self.base, verify=self.tls,
                            timeout=httpx.Timeout(30.0, read=None))
        rv: str | None = None
        while not self.stop.is_set():
            try:
                if rv is None:
                    listed = http.get(path, params={"labelSelector": selector})
                    listed.raise_for_status()
                    body = listed.json()
                    for item in body.get("items") or []:
                        handle("ADDED", item)
                    rv = str(body["metadata"]["resourceVersion"])
                params = {"watch": "1", "resourceVersion": rv, "labelSelector": selector,
                          "allowWatchBookmarks": "true", "timeoutSeconds": "600"}
                with http.stream("GET", path, params=params) as resp:
                    if resp.status_code == 410:
                        rv = None
                        continue
                    resp.raise_for_status()
                    for line in resp.iter_lines():
                        if not line:
                            continue
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            rv = None
                            break
                        rv = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            handle(event["type"], event["object"])
            except Exception as exc:
                if self.stop.is_set():
                    break
                print(f"floor: watch {path}: {exc!r}", file=sys.stderr, flush=True)
                time.sleep(0.2)

    def run(self) -> None:
        threads = [
            threading.Thread(target=self.watch, daemon=True, args=(
                f"/api/v1/namespaces/{self.ns}/configmaps", RUN_LABEL, self.on_run)),
            threading.Thread(target=self.watch, daemon=True, args=(
                f"/api/v1/namespaces/{self.ns}/pods", RUN_LABEL, self.on_pod)),
        ]
        for t in threads:
            t.start()
        print("floor: watching", flush=True)
        self.stop.wait()


def main() -> None:
    p = argparse.ArgumentParser(description="the floor controller (bench/operator_bench)")
    p.add_argument("--kubeconfig", type=Path, required=True)
    p.add_argument("--namespace", required=True)
    args = p.parse_args()
    floor = Floor(args.kubeconfig, args.namespace)
    signal.signal(signal.SIGTERM, lambda *_: floor.stop.set())
    floor.run()


if __name__ == "__main__":
    main()
