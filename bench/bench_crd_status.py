"""What a status write of a 1,000-step run costs the API server, per CRD schema variant.

    python bench/bench_crd_status.py        # GET, merge patch, JSON patch (QUICK= adds more)
    VARIANTS=real,loose N=21 PROFILE=real python bench/bench_crd_status.py

A bare control plane (etcd + kube-apiserver with profiling on, no controllers), the real
WorkflowRun CRD (`real`) and scratch copies of it in other groups with the status schema
changed (`spec-free`: status.workflowSpec untyped; `steps-free`: status.steps untyped;
`loose`: both; `status-free`: all of status; `spec-nodefault`, `spec-novalid`,
`spec-atomic-lists`: the pinned spec typed without defaults / value checks / list-map keys);
in each, a fresh 1,000-step run object as bench_ui.py makes it (the spec pinned in status as
the API server defaulted it, 1,000 step statuses), then N status PATCHes of one step each,
timed with a raw HTTP client (no Python client overhead): wall median and min, and the API
server process's CPU per request (/proc, robust to the machine's load). PROFILE=<variant>
writes a 20 s CPU profile of the API server under writes (`go tool pprof -top`).
Figures: bench/RESULTS.md, 2026-12-01.
"""

from __future__ import annotations

import copy
import json
import os
import ssl
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path("/work/main")
sys.path.insert(0, str(ROOT / "hack"))
sys.path.insert(0, str(ROOT / "bench"))

from localcluster.cluster import default_bin_dir  # noqa: E402
from localcluster.controlplane import ControlPlane  # noqa: E402
from taskforge.api import crdgen  # noqa: E402
from taskforge.api.run import WorkflowRunStatus  # noqa: E402
from taskforge.api.structural import structural_schema  # noqa: E402

N = int(os.environ.get("N", "15"))


class ProfiledControlPlane(ControlPlane):
    def _controller_manager_argv(self) -> list[str]:
        return ["true"]  # not needed: only etcd and the apiserver run

    def _apiserver_argv(self, etcd_port: int) -> list[str]:
        return [("--profiling=true" if a == "--profiling=false" else a)
                for a in super()._apiserver_argv(etcd_port)]


def wide_spec(columns: int = 10, rows: int = 100) -> dict[str, Any]:
    steps = []
    for c in range(columns):
        for r in range(rows):
            step: dict[str, Any] = {"name": f"c{c}-s{r}", "log": {"message": "x"}}
            if c:
                step["dependsOn"] = [f"c{c - 1}-s{r}", f"c{c - 1}-s{(r + 1) % rows}"]
            steps.append(step)
    return {"steps": steps}


def step_status(phase: str) -> dict[str, Any]:
    out: dict[str, Any] = {"phase": phase, "attempts": 0 if phase == "Pending" else 1}
    if phase != "Pending":
        out["startedAt"] = "2026-11-30T21:00:00Z"
    if phase == "Succeeded":
        out["finishedAt"] = "2026-11-30T21:00:01Z"
        out["outputs"] = {"message": "x"}
    return out


def full_status() -> dict[str, Any]:
    names = [f"c{c}-s{r}" for c in range(10) for r in range(100)]
    return {"phase": "Running", "startedAt": "2026-11-30T21:00:00Z", "progress": "600/1000",
            "workflowSpec": wide_spec(), "workflow": {"name": "wide", "generation": 1},
            "steps": {n: step_status("Succeeded" if i < 600 else "Running" if i < 650
                                     else "Pending") for i, n in enumerate(names)}}


def typed_status() -> dict[str, Any]:
    """The run's status schema with steps and workflowSpec typed, as crdgen made it before
    they became opaque."""
    schema: dict[str, Any] = crdgen._strip_validations(
        structural_schema(WorkflowRunStatus))
    for name in crdgen.OPAQUE_STATUS_FIELDS:
        schema["properties"][name]["x-kubernetes-map-type"] = "atomic"
    return schema


def variant_crd(base: dict[str, Any], group: str, mutate: str) -> dict[str, Any]:
    crd = copy.deepcopy(base)
    crd["metadata"] = {"name": f"workflowruns.{group}"}
    crd["spec"]["group"] = group
    for v in crd["spec"]["versions"]:
        props = v["schema"]["openAPIV3Schema"]["properties"]
        # every variant starts from the schema before 2026-12-01: both big maps typed
        status = props["status"] = typed_status()
        if mutate == "typed":
            pass
        elif mutate == "spec-free":  # the pinned spec is not typed in status
            status["properties"]["workflowSpec"] = {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True,
                "x-kubernetes-map-type": "atomic"}
        elif mutate == "status-free":
            props["status"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        elif mutate == "no-listmap":  # steps an atomic list, not a map keyed by name
            ws = status["properties"]["workflowSpec"]["properties"]
            for key in ("steps", "finally"):
                if key in ws:
                    ws[key].pop("x-kubernetes-list-type", None)
                    ws[key].pop("x-kubernetes-list-map-keys", None)
                    ws[key]["x-kubernetes-list-type"] = "atomic"
        elif mutate == "loose":  # both big maps untyped
            for key in ("workflowSpec", "steps"):
                status["properties"][key] = {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": True,
                    "x-kubernetes-map-type": "atomic"}
        elif mutate == "spec-atomic-lists":
            ws = status["properties"]["workflowSpec"]["properties"]
            for key in ("steps", "finally"):
                ws[key].pop("x-kubernetes-list-map-keys", None)
                ws[key]["x-kubernetes-list-type"] = "atomic"
        elif mutate == "spec-atomic":  # typed, but one atomic value for managedFields
            status["properties"]["workflowSpec"]["x-kubernetes-map-type"] = "atomic"
        elif mutate == "spec-nodefault":  # typed, no defaults applied to the pinned copy
            status["properties"]["workflowSpec"] = _no_defaults(
                status["properties"]["workflowSpec"])
        elif mutate == "steps-free":
            status["properties"]["steps"] = {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True,
                "x-kubernetes-map-type": "atomic"}
        elif mutate == "spec-novalid":  # typed for pruning/defaults, no value checks
            status["properties"]["workflowSpec"] = _no_checks(
                status["properties"]["workflowSpec"])
        else:
            raise ValueError(mutate)
    return crd


def _no_defaults(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _no_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_no_defaults(v) for v in node]
    return node


CHECKS = {"pattern", "minLength", "maxLength", "minimum", "maximum", "enum", "minItems",
          "maxItems", "maxProperties", "minProperties", "format"}


def _no_checks(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (_no_checks(v) if k != "properties" else
                    {pk: _no_checks(pv) for pk, pv in v.items()})
                for k, v in node.items()
                if k not in CHECKS or not isinstance(v, (str, int, float, list))}
    if isinstance(node, list):
        return [_no_checks(v) for v in node]
    return node


class Api:
    def __init__(self, cp: ControlPlane) -> None:
        c = cp.certs
        assert c is not None
        ctx = ssl.create_default_context(cafile=str(c.ca.cert))
        ctx.load_cert_chain(str(c.admin.cert), str(c.admin.key))
        self.http = httpx.Client(base_url=cp.server_url, verify=ctx, timeout=60)

    def req(self, method: str, path: str, body: Any = None, ctype: str = "application/json",
            params: dict[str, str] | None = None) -> httpx.Response:
        data = None if body is None else json.dumps(body).encode()
        r = self.http.request(method, path, content=data, params=params,
                              headers={"Content-Type": ctype, "Accept": "application/json"})
        if r.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:500]}")
        return r


class Bench:
    """One variant's run objects (at `path`) and the timings of writes to them."""

    def __init__(self, api: Api, pid: int, group: str, status: dict[str, Any]) -> None:
        self.api, self.pid, self.group, self.status = api, pid, group, status
        self.path = f"/apis/{group}/v1alpha1/namespaces/b/workflowruns"
        self.names = [f"c{6 + i // 100}-s{i % 100}" for i in range(200)]

    def cpu_ms(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")

    def timed(self, fn: Any) -> tuple[float, float, float]:
        """Wall median and min (ms), and the API server's CPU ms per call, of N calls."""
        times = []
        c0 = self.cpu_ms()
        for i in range(N):
            t = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times), min(times), (self.cpu_ms() - c0) / N

    def fresh(self, name: str) -> dict[str, Any]:
        self.api.req("POST", self.path, {"apiVersion": f"{self.group}/v1alpha1",
                                         "kind": "WorkflowRun", "metadata": {"name": name},
                                         "spec": {"workflowRef": {"name": "wide"}}},
                     params={"fieldManager": "bench"})
        self.api.req("PATCH", f"{self.path}/{name}/status", {"status": self.status},
                     MERGE, OPERATOR)
        obj: dict[str, Any] = self.api.req("GET", f"{self.path}/{name}").json()
        return obj

    def merge(self, name: str, i: int) -> None:
        self.api.req("PATCH", f"{self.path}/{name}/status",
                     {"status": {"steps": {self.names[i]: step_status("Running")}}},
                     MERGE, OPERATOR)

    def json_patch(self, name: str, i: int) -> None:
        self.api.req("PATCH", f"{self.path}/{name}/status",
                     [{"op": "replace", "path": f"/status/steps/{self.names[i]}",
                       "value": step_status("Running")}],
                     "application/json-patch+json", OPERATOR)

    def apply(self, name: str, full: dict[str, Any], i: int) -> None:
        full["steps"][self.names[i]] = step_status("Running")
        self.api.req("PATCH", f"{self.path}/{name}/status",
                     {"apiVersion": f"{self.group}/v1alpha1", "kind": "WorkflowRun",
                      "metadata": {"name": name}, "status": full},
                     "application/apply-patch+yaml",
                     {"fieldManager": "taskforge-operator", "force": "true"})

    def measure(self, quick: bool) -> dict[str, tuple[float, float, float]]:
        results = {"GET": self.timed(lambda i: self.api.req("GET", f"{self.path}/big")),
                   "merge PATCH": self.timed(lambda i: self.merge("big", i))}
        self.fresh("jp")
        results["JSON patch"] = self.timed(lambda i: self.json_patch("jp", i))
        if quick:
            return results
        self.fresh("mf")
        self.api.req("PATCH", f"{self.path}/mf", {"metadata": {"managedFields": [{}]}}, MERGE)
        results["merge PATCH, managedFields cleared"] = self.timed(lambda i: self.merge("mf", i))
        self.fresh("ssa")
        full = copy.deepcopy(self.status)
        results["apply, whole status"] = self.timed(lambda i: self.apply("ssa", full, i))
        for name in ("big", "jp", "mf", "ssa"):
            o = self.api.req("GET", f"{self.path}/{name}").json()
            assert len(o["status"]["steps"]) == 1000, (name, len(o["status"]["steps"]))
            fields = o["metadata"].get("managedFields") or []
            print(f"   {name}: {len(json.dumps(o)) // 1024} KiB, managedFields "
                  f"{len(json.dumps(fields))} B")
        return results

    def profile(self, cp: ControlPlane, out: Path) -> None:
        """20 s of the API server's CPU while one step is written again and again."""
        stop = threading.Event()

        def writer() -> None:
            api, i = Api(cp), 0
            while not stop.is_set():
                api.req("PATCH", f"{self.path}/big/status", {"status": {"steps": {
                    f"c9-s{i % 100}": step_status("Running" if i % 2 else "Pending")}}},
                    MERGE, OPERATOR)
                i += 1
        thread = threading.Thread(target=writer)
        thread.start()
        prof = self.api.http.get("/debug/pprof/profile", params={"seconds": "20"}, timeout=60)
        stop.set()
        thread.join()
        out.write_bytes(prof.content)
        print("profile ->", out, "(go tool pprof -top kube-apiserver", out, ")")


MERGE = "application/merge-patch+json"
OPERATOR = {"fieldManager": "taskforge-operator"}


def main() -> None:
    workdir = Path(os.environ.get("WORKDIR", "/tmp/bench-crd-status"))
    cp = ProfiledControlPlane(workdir, default_bin_dir())
    cp.launch()
    try:
        cp.wait_ready(120)
        pid = cp.apiserver.pid if cp.apiserver is not None else None
        assert pid is not None
        api = Api(cp)
        base = yaml.safe_load((ROOT / "crds/taskforge.io_workflowruns.yaml").read_text())
        variants = os.environ.get("VARIANTS", "typed,real").split(",")
        groups = {}
        for i, mutate in enumerate(variants):
            group = "taskforge.io" if mutate == "real" else f"v{i}.scratch.io"
            crd = base if mutate == "real" else variant_crd(base, group, mutate)
            api.req("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
            groups[mutate] = group
        time.sleep(3)  # CRDs established
        api.req("POST", "/api/v1/namespaces", {"metadata": {"name": "b"}})
        status = full_status()
        print(f"load {os.getloadavg()[0]:.1f}; status body {len(json.dumps(status)) // 1024} KiB;"
              f" N={N}")
        benches = {}
        for mutate, group in groups.items():
            bench = benches[mutate] = Bench(api, pid, group, status)
            obj = bench.fresh("big")
            if mutate == variants[0]:  # the others pin it as the API server defaulted it
                status["workflowSpec"] = obj["status"]["workflowSpec"]
            results = bench.measure(bool(os.environ.get("QUICK", "1")))
            print(f"{mutate}: object {len(json.dumps(obj)) // 1024} KiB")
            for k, (med, lo, cpu) in results.items():
                print(f"  {k:36s} wall median {med:7.1f} min {lo:7.1f} ms;"
                      f" API server CPU {cpu:6.1f} ms")
            sys.stdout.flush()
        if os.environ.get("PROFILE"):
            benches[os.environ["PROFILE"]].profile(cp, Path(os.environ.get(
                "PROFILE_OUT", workdir / "apiserver.pprof")))
    finally:
        cp.stop()


if __name__ == "__main__":
    main()
