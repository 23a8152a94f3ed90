"""The web UI under load (issue 17): `python bench/bench_ui.py` prints a table.

On the local control plane with the real web server (hack/ui_stage.py) and Debian's headless
chromium; no operator: the bench writes run status itself, as the operator would, so each
update's time of writing is known exactly.

* the run page of a 1,000-step run (10 columns of 100 steps, each depending on two of the
  previous column; 600 Succeeded, 50 Running): server time for the page (which comes with
  the run's state and its graph drawn), and for comparison the API's RunDetail JSON and
  graph SVG; browser time from navigation to the graph and the steps table fully drawn and
  coloured (`performance.now()`, whose origin is the navigation);
* 50 concurrent live viewers (SSE streams) of that run: the API server's own count of open
  WATCH requests on workflowruns before and after, and the server's taskforge_ui_kube_watches;
* memory: the server's RSS idle, with 50 viewers while the 1,000-step run changes 30 times
  (one viewer never reading, so the bounded queue must drop it), and after they leave;
* latency: status write (time taken before the PATCH is sent) to the browser's DOM showing
  it (a MutationObserver's Date.now()), and to each of the 50 SSE viewers, for a 10-step run
  and for the 1,000-step run; for the latter also from the write's commit (its watch event's
  arrival at an independent watcher), which splits the API server's share from the web
  server's and the browser's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))

from ui_stage import Stage, chromium, run, workflow  # noqa: E402

NS = "bench-ui"
VIEWERS = 50
COLUMNS, ROWS = 10, 100


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wide_spec() -> dict[str, Any]:
    steps = []
    for c in range(COLUMNS):
        for r in range(ROWS):
            step: dict[str, Any] = {"name": f"c{c}-s{r}", "log": {"message": "x"}}
            if c:
                step["dependsOn"] = [f"c{c - 1}-s{r}", f"c{c - 1}-s{(r + 1) % ROWS}"]
            steps.append(step)
    return {"steps": steps}


def small_spec() -> dict[str, Any]:
    return {"steps": [{"name": f"s{i}", "log": {"message": "x"},
                       **({"dependsOn": [f"s{i - 1}"]} if i else {})} for i in range(10)]}


def step_status(phase: str) -> dict[str, Any]:
    out: dict[str, Any] = {"phase": phase, "attempts": 0 if phase == "Pending" else 1}
    if phase != "Pending":
        out["startedAt"] = now_iso()
    if phase == "Succeeded":
        out["finishedAt"] = now_iso()
        out["outputs"] = {"message": "x"}
    return out


class Runs:
    def __init__(self, stage: Stage) -> None:
        self.api = client.CustomObjectsApi(config.new_client_from_config(
            str(stage.cluster.kubeconfig)))

    def status(self, name: str, body: dict[str, Any]) -> int:
        """A merge patch of the run's status (as the operator writes it); the resourceVersion
        the API server gave the write."""
        obj: Any = self.api.patch_namespaced_custom_object_status(
            "taskforge.io", "v1alpha1", NS, "workflowruns", name, {"status": body})
        return int(obj["metadata"]["resourceVersion"])


_RV = re.compile(rb'"resourceVersion":"(\d+)"')


class Committed(threading.Thread):
    """An independent watcher of the bench's runs: when the watch event of each
    resourceVersion arrives here. By then the write is committed and the API server is
    sending it to every watcher, the web server's included, so `DOM time - this` is the web
    server's and the browser's share of an update, and `this - PATCH start` the API
    server's."""

    def __init__(self, runs: Runs) -> None:
        super().__init__(daemon=True)
        self.api = runs.api
        self.arrived: dict[int, float] = {}
        self.response: Any = None

    def run(self) -> None:
        self.response = self.api.list_namespaced_custom_object(
            "taskforge.io", "v1alpha1", NS, "workflowruns", watch=True, timeout_seconds=3600,
            _preload_content=False)
        pending = b""
        with contextlib.suppress(Exception):  # closed by close()
            for chunk in self.response.stream(1 << 16):
                now = time.time()
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    # the object's own resourceVersion is the first in its text
                    found = _RV.search(line)
                    if found:
                        self.arrived[int(found.group(1))] = now

    def wait_for(self, rv: int, timeout: float = 10.0) -> float | None:
        deadline = time.monotonic() + timeout
        while rv not in self.arrived and time.monotonic() < deadline:
            time.sleep(0.002)
        return self.arrived.get(rv)

    def close(self) -> None:
        """Nothing to do: closing the response from another thread while this one reads it
        blocked the bench until the next watch event; the thread is a daemon, and the
        watch ends with the cluster."""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def apiserver_watches(stage: Stage) -> int:
    text = stage.kubectl("get", "--raw", "/metrics")
    total = 0
    for line in text.splitlines():
        if (line.startswith("apiserver_longrunning_requests{") and 'resource="workflowruns"' in line
                and 'verb="WATCH"' in line):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def server_metric(stage: Stage, name: str) -> float:
    text = httpx.get(f"{stage.url}/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in re.finditer(
        rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


class Viewer(threading.Thread):
    """One SSE client of the run's live stream; records when each `run` event arrives."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.arrivals: list[tuple[float, bytes]] = []
        self.snapshot = threading.Event()
        self.stop = False
        self.client = httpx.Client(timeout=None)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        with contextlib.suppress(httpx.HTTPError, RuntimeError):  # closed by close()
            self._read(headers)

    def close(self) -> None:
        self.stop = True
        self.client.close()

    def _read(self, headers: dict[str, str]) -> None:
        """Scans raw bytes for event names: parsing 50 copies of a 450 KiB RunDetail per update
        in this process would load the machine more than the server does."""
        with self.client.stream("GET", self.url, headers=headers) as answer:
            tail = b""
            for chunk in answer.iter_bytes():
                if self.stop:
                    return
                seen = tail + chunk
                if not self.snapshot.is_set() and b"event: snapshot" in seen:
                    self.snapshot.set()
                for _ in range(seen.count(b"event: run")):
                    self.arrivals.append((time.time(), b"run"))
                tail = seen[-16:]
                if b"event: run" in tail:
                    tail = b""


def stuck_viewer(stage: Stage, path: str) -> socket.socket:
    """A client that asks for the stream and never reads: the server must drop it."""
    host, port = stage.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {stage.token}"
                  "\r\nAccept: text/event-stream\r\n\r\n").encode())
    return sock


PAGE_READY = """
const done = arguments[arguments.length - 1];
const want = arguments[0];
function check() {
  const nodes = document.querySelectorAll('#graph .node[data-phase]').length;
  const rows = document.querySelectorAll('#steps tbody tr').length;
  // the table shows at most 150 rows of a big run until asked for all
  if (nodes >= want && rows >= Math.min(want, 150)) {
    // one more frame: what was drawn is painted
    requestAnimationFrame(() => setTimeout(() => done(performance.now())));
  } else requestAnimationFrame(check);
}
check();
"""

OBSERVE = """
window.__seen = {};
new MutationObserver((records) => {
  for (const r of records) {
    const d = r.target.dataset;
    if (d && d.step && d.phase) window.__seen[d.step + '/' + d.phase] = Date.now();
  }
}).observe(document.getElementById('graph'),
            {attributes: true, subtree: true, attributeFilter: ['data-phase']});
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    workdir = Path(os.environ.get("TASKFORGE_BENCH_DIR", ROOT / ".local" / "bench-ui"))
    rows: list[tuple[str, str, str]] = []
    with Stage(workdir, namespace=NS, with_operator=False) as stage:
        assert stage.web is not None
        pid = stage.web.pid
        rss_idle = rss_mib(pid)
        runs = Runs(stage)
        stage.apply(workflow("wide", wide_spec()), workflow("small", small_spec()))
        stage.create(run("big", "wide"), run("tiny", "small"))
        names = [f"c{c}-s{r}" for c in range(COLUMNS) for r in range(ROWS)]
        big_steps = {n: step_status("Succeeded" if i < 600 else "Running" if i < 650
                                    else "Pending") for i, n in enumerate(names)}
        # pinned as the operator pins it when a run starts (status.workflowSpec/workflow)
        runs.status("big", {"phase": "Running", "startedAt": now_iso(), "progress": "600/1000",
                            "workflowSpec": wide_spec(),
                            "workflow": {"name": "wide", "generation": 1},
                            "steps": big_steps})
        runs.status("tiny", {"phase": "Running", "startedAt": now_iso(), "progress": "0/10",
                             "workflowSpec": small_spec(),
                             "workflow": {"name": "small", "generation": 1},
                             "steps": {f"s{i}": step_status("Pending") for i in range(10)}})
        time.sleep(1)
        auth = {"Authorization": f"Bearer {stage.token}"}
        api = f"{stage.url}/api/v1/namespaces/{NS}"

        # --- server time of the 1,000-step run page ---
        with httpx.Client(headers=auth, timeout=30) as http:
            timings: dict[str, list[float]] = {"page": [], "detail": [], "graph": []}
            detail_bytes = svg_bytes = page_bytes = 0
            for _ in range(7):
                t = time.perf_counter()
                page = http.get(f"{stage.url}/namespaces/{NS}/runs/big")
                page.raise_for_status()
                timings["page"].append(time.perf_counter() - t)
                page_bytes = len(page.content)
                assert 'id="run-initial"' in page.text and "data-phase=" in page.text
                t = time.perf_counter()
                answer = http.get(f"{api}/runs/big")
                answer.raise_for_status()
                timings["detail"].append(time.perf_counter() - t)
                detail = answer.json()
                detail_bytes = len(answer.content)
                t = time.perf_counter()
                svg = http.post(f"{stage.url}/ui/graph", json={
                    "steps": [s["name"] for s in detail["steps"]], "edges": detail["edges"],
                    "finally": detail["finally"]})
                svg.raise_for_status()
                timings["graph"].append(time.perf_counter() - t)
                svg_bytes = len(svg.content)
        med = {k: statistics.median(v) * 1000 for k, v in timings.items()}
        rows.append(("1,000-step run page, server time (median of 7)",
                     f"{med['page']:.0f} ms", f"the page with the run's state and its "
                     f"coloured graph ({page_bytes // 1024} KiB); for comparison the API's "
                     f"RunDetail {med['detail']:.0f} ms ({detail_bytes // 1024} KiB) and "
                     f"graph SVG {med['graph']:.0f} ms ({svg_bytes // 1024} KiB), which the "
                     "page no longer waits for"))

        # --- browser time ---
        driver = chromium()
        try:
            stage.login(driver)
            driver.set_script_timeout(30)
            loads: list[float] = []
            marks: dict[str, list[float]] = {}
            for _ in range(5):
                driver.get(f"{stage.url}/namespaces/{NS}/runs/big")
                loads.append(float(driver.execute_async_script(PAGE_READY, 1000)))
                for mark in driver.execute_script(
                        "return performance.getEntriesByType('mark')"
                        ".map(m => [m.name, m.startTime]).concat("
                        "performance.getEntriesByType('navigation').flatMap(n => ["
                        "['html-first-byte', n.responseStart], ['html-last-byte', n.responseEnd],"
                        " ['dom-parsed', n.domInteractive]]))"):
                    marks.setdefault(mark[0], []).append(float(mark[1]))
            print("longtasks", driver.execute_script(
                "return performance.getEntriesByType('longtask')"
                ".map(t => [t.startTime, t.duration])"), file=sys.stderr)
            for entry in driver.execute_script(
                    "return performance.getEntriesByType('resource')"
                    ".map(r => [r.name, r.startTime, r.responseStart, r.responseEnd])"):
                print("resource", entry, file=sys.stderr)
            phases = ", ".join(f"{k.removeprefix('tf:')} at {statistics.median(v):.0f} ms"
                               for k, v in sorted(marks.items(), key=lambda kv: kv[1][0]))
            rows.append(("1,000-step run page, browser: navigation to graph + table drawn",
                         f"{statistics.median(loads):.0f} ms",
                         f"median of 5, max {max(loads):.0f} ms (headless chromium; "
                         f"{phases})"))
            floor = []
            for _ in range(5):
                driver.get(f"{stage.url}/namespaces/{NS}/runs/tiny")
                floor.append(float(driver.execute_async_script(PAGE_READY, 10)))
            rows.append(("10-step run page, browser (the floor: this machine, this load)",
                         f"{statistics.median(floor):.0f} ms", f"max {max(floor):.0f} ms"))
            rss_after_pages = rss_mib(pid)
            if sys.argv[1:] == ["page"]:
                for what, value, detail in rows:
                    print(f"| {what} | {value} | {detail} |")
                return

            # --- 50 viewers, one watch ---
            watches_before = apiserver_watches(stage)
            viewers = [Viewer(f"{api}/live/runs/big", stage.token) for _ in range(VIEWERS)]
            for v in viewers:
                v.start()
            for v in viewers:
                v.snapshot.wait(60)
            time.sleep(1)
            watches_with = apiserver_watches(stage)
            hub_watches = server_metric(stage, "taskforge_ui_kube_watches")
            connected = server_metric(stage, "taskforge_ui_viewers")
            rows.append((f"{VIEWERS} live viewers of one run: watches on workflowruns at the "
                         "API server", f"+{watches_with - watches_before}",
                         f"{watches_before} before, {watches_with} with them (the browser's "
                         f"stream included); server: taskforge_ui_kube_watches {hub_watches:.0f}"
                         " (all kinds: the browser's run page also has the Events watch),"
                         f" taskforge_ui_viewers {connected:.0f}"))

            # --- latency, 1,000-step run, with the 50 viewers and the browser watching ---
            committer = Committed(runs)
            committer.start()
            stuck = stuck_viewer(stage, f"/api/v1/namespaces/{NS}/live/runs/big")
            driver.get(f"{stage.url}/namespaces/{NS}/runs/big")
            driver.execute_async_script(PAGE_READY, 1000)
            driver.execute_script(OBSERVE)
            browser_ms, sse_ms, patch_ms = [], [], []
            browser_commit_ms, sse_commit_ms, commit_ms = [], [], []
            for i in range(30):
                step = names[650 + i]
                for v in viewers:
                    v.arrivals.clear()
                wrote = time.time()
                rv = runs.status("big", {"steps": {step: step_status("Running")}})
                patch_ms.append((time.time() - wrote) * 1000)
                committed = committer.wait_for(rv)
                if committed is not None:
                    commit_ms.append((committed - wrote) * 1000)
                key = f"{step}/Running"
                deadline = time.monotonic() + 10
                seen = None
                while seen is None and time.monotonic() < deadline:
                    seen = driver.execute_script("return window.__seen[arguments[0]]", key)
                    time.sleep(0.005)
                if seen is not None:
                    browser_ms.append(seen - wrote * 1000)
                    if committed is not None:
                        browser_commit_ms.append(seen - committed * 1000)
                time.sleep(0.2)
                sse_ms += [(v.arrivals[0][0] - wrote) * 1000 for v in viewers if v.arrivals]
                if committed is not None:
                    sse_commit_ms += [(v.arrivals[0][0] - committed) * 1000
                                      for v in viewers if v.arrivals]
            rss_busy = rss_mib(pid)
            dropped = server_metric(stage, "taskforge_ui_viewers_dropped_total")
            rows.append(("update -> browser DOM, 1,000-step run (30 writes, 50 viewers on)",
                         f"p50 {pct(browser_ms, .5):.0f} ms",
                         f"p95 {pct(browser_ms, .95):.0f} ms, max {max(browser_ms):.0f} ms, "
                         f"{len(browser_ms)}/30 seen"))
            rows.append(("update -> each of 50 SSE viewers, 1,000-step run",
                         f"p50 {pct(sse_ms, .5):.0f} ms",
                         f"p95 {pct(sse_ms, .95):.0f} ms, max {max(sse_ms):.0f} ms, "
                         f"{len(sse_ms)} arrivals of {30 * VIEWERS}"))
            rows.append(("of which: the status PATCH's own round trip at the API server",
                         f"p50 {pct(patch_ms, .5):.0f} ms",
                         f"p95 {pct(patch_ms, .95):.0f} ms; PATCH start -> its watch event at "
                         f"an independent watcher p50 {pct(commit_ms, .5):.0f} ms, p95 "
                         f"{pct(commit_ms, .95):.0f} ms ({len(commit_ms)}/30)"))
            rows.append(("update -> browser DOM, from the commit (watch event at an "
                         "independent watcher), 1,000-step run",
                         f"p50 {pct(browser_commit_ms, .5):.0f} ms",
                         f"p95 {pct(browser_commit_ms, .95):.0f} ms, max "
                         f"{max(browser_commit_ms):.0f} ms: the web server's and the "
                         "browser's share"))
            rows.append(("update -> each of 50 SSE viewers, from the commit",
                         f"p50 {pct(sse_commit_ms, .5):.0f} ms",
                         f"p95 {pct(sse_commit_ms, .95):.0f} ms"))

            driver.get(f"{stage.url}/namespaces/{NS}/runs/tiny")
            driver.execute_async_script(PAGE_READY, 10)
            driver.execute_script(OBSERVE)
            small_ms = []
            for i in range(20):
                step, phase = f"s{i % 10}", ("Running" if i < 10 else "Succeeded")
                wrote = time.time()
                runs.status("tiny", {"steps": {step: step_status(phase)}})
                deadline = time.monotonic() + 10
                seen = None
                while seen is None and time.monotonic() < deadline:
                    seen = driver.execute_script("return window.__seen[arguments[0]]",
                                                 f"{step}/{phase}")
                    time.sleep(0.005)
                if seen is not None:
                    small_ms.append(seen - wrote * 1000)
                time.sleep(0.1)
            rows.append(("update -> browser DOM, 10-step run (20 writes)",
                         f"p50 {pct(small_ms, .5):.0f} ms",
                         f"p95 {pct(small_ms, .95):.0f} ms, max {max(small_ms):.0f} ms, "
                         f"{len(small_ms)}/20 seen"))
        finally:
            driver.quit()
        for v in viewers:
            v.close()
        committer.close()
        stuck.close()
        time.sleep(3)
        rss_after = rss_mib(pid)
        rows.append(("web server RSS", f"{rss_busy:.0f} MiB busy",
                     f"idle {rss_idle:.0f} MiB, after 5 loads of the 1,000-step page "
                     f"{rss_after_pages:.0f} MiB, with 50+1 viewers after 30 updates of it "
                     f"{rss_busy:.0f} MiB, viewers gone {rss_after:.0f} MiB; a never-reading "
                     f"viewer: dropped {dropped:.0f}"))
    print(f"\n## bench_ui {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, nproc {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}\n")
    print("| what | measured | detail |\n|---|---|---|")
    for what, value, detail in rows:
        print(f"| {what} | {value} | {detail} |")
    print(json.dumps({"rows": rows}), file=sys.stderr)


if __name__ == "__main__":
    main()
