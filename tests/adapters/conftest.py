"""A real redis-server for the adapter tests (Debian's, on a free loopback port).

Reuses the local cluster's ``RedisServer`` (persistence off, same port on restart).
Each test gets its own key prefix instead of a FLUSHALL, so tests never see each
other's keys; the outage tests get a server of their own so stopping it cannot
disturb anything else.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from taskforge.adapters.redis_client import RedisConnection, RedisSettings

try:
    from localcluster.redis_server import RedisServer
except ImportError:  # a venv installed before hack/ became a package root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))
    from localcluster.redis_server import RedisServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server the test may stop, SIGSTOP and restart."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(redis_server: RedisServer) -> RedisSettings:
    return RedisSettings(url=redis_server.url, prefix=f"t-{uuid.uuid4().hex[:8]}:")


@pytest.fixture
async def conn(settings: RedisSettings) -> AsyncIterator[RedisConnection]:
    c = RedisConnection(settings)
    try:
        yield c
    finally:
        await c.aclose()

