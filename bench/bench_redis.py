"""Rate-limit decisions per second from one operator process against a real Redis.

Starts its own redis-server on a free loopback port (or uses ``REDIS_URL`` when
set) and drives ``RateLimiter.acquire`` exactly as the operator does: through
``RedisConnection`` (deadline, error mapping) and EVALSHA of the GCRA script.
No pipelining: concurrency comes from ``asyncio.gather`` over N tasks, each
awaiting one decision at a time, so every figure is a real round trip. The
latency columns are per decision as its caller sees it.

    .venv/bin/python bench/bench_redis.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from taskforge.adapters.ratelimit import RateLimiter
from taskforge.adapters.redis_client import RedisConnection, RedisSettings
from taskforge.adapters.slots import Slots

try:
    from localcluster.redis_server import RedisServer
except ImportError:  # a venv installed before hack/ became a package root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hack"))
    from localcluster.redis_server import RedisServer

TARGET = 5_000


@dataclass
class Row:
    scenario: str
    in_flight: int
    decisions: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.decisions / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def drive(
    name: str, in_flight: int, seconds: float, decide: Callable[[int, int], Awaitable[object]]
) -> Row:
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        i = 0
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            await decide(w, i)
            latencies.append(time.perf_counter() - t0)
            i += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(in_flight)))
    return Row(name, in_flight, len(latencies), time.perf_counter() - t0, latencies)


async def scenarios(url: str, in_flight: int, seconds: float) -> list[Row]:
    settings = RedisSettings(url=url, prefix=f"bench-{in_flight}:", pool_size=in_flight)
    conn = RedisConnection(settings)
    limiter, slots = RateLimiter(conn), Slots(conn)

    async def spread(w: int, i: int) -> object:
        # 200 keys at 1000/s each: mostly admitted, some denied, like many workflows.
        return await limiter.acquire(f"wf-{(w * 7919 + i) % 200}", 1000, 1.0)

    async def contended(w: int, i: int) -> object:
        # One shared key, every caller a named waiter: the queue path, mostly denials.
        return await limiter.acquire("github-api", 100, 1.0, waiter=f"run-{w}/call")

    async def slot(w: int, i: int) -> object:
        return await slots.acquire(f"wf-{w % 50}", f"run-{w}-{i % 4}", 2)

    rows: list[Row] = []
    try:
        await limiter.acquire("warm-up", 1, 1.0)
        rows.append(await drive("limiter, 200 keys", in_flight, seconds, spread))
        if in_flight > 1:
            name = "limiter, 1 key, queued waiters"
            rows.append(await drive(name, in_flight, seconds, contended))
        rows.append(await drive("slots acquire", in_flight, seconds, slot))
    finally:
        await conn.aclose()
    return rows


async def run(url: str, seconds: float) -> list[Row]:
    rows: list[Row] = []
    for in_flight in (1, 16, 64):
        rows += await scenarios(url, in_flight, seconds)
    return rows


def table(rows: list[Row]) -> str:
    head = (
        f"{'scenario':34} {'in flight':>9} {'decisions':>10} {'per s':>9} "
        f"{'p50 ms':>8} {'p99 ms':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.scenario:34} {r.in_flight:>9} {r.decisions:>10} {r.rate:>9.0f} "
            f"{r.pct(0.50):>8.3f} {r.pct(0.99):>8.3f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per scenario")
    args = parser.parse_args()
    server: RedisServer | None = None
    url = os.environ.get("REDIS_URL")
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        if not url:
            server = RedisServer(Path(tmp))
            server.start()
            url = server.url
        try:
            rows = asyncio.run(run(url, args.seconds))
        finally:
            if server is not None:
                server.stop()
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split(" ")[2:3]
    print(
        f"# bench_redis  {time.strftime('%Y-%m-%d')}  {platform.node()}  {os.cpu_count()} CPUs  "
        f"Python {platform.python_version()}  redis-server {''.join(version)}  "
        f"{args.seconds:g} s per row, asyncio.gather, no pipelining"
    )
    print(table(rows))
    best = max(r.rate for r in rows if r.scenario.startswith("limiter"))
    single = next(r for r in rows if r.in_flight == 1 and r.scenario.startswith("limiter"))
    print(
        f"\nlimiter: best {best:.0f} decisions/s (target >= {TARGET}: "
        f"{'met' if best >= TARGET else 'MISSED'}); single decision p50 "
        f"{single.pct(0.5):.3f} ms, p99 {single.pct(0.99):.3f} ms; "
        f"stdev {statistics.pstdev(single.latencies) * 1000:.3f} ms"
    )


if __name__ == "__main__":
    main()
