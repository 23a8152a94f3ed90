"""Redis settings from the environment, the start-up line, and the connection wrapper."""

from __future__ import annotations

import pytest
from taskforge.adapters.redis_client import (
    RedisConnection,
    RedisSettings,
    RedisUnavailableError,
    parse_seconds,
)

pytestmark = pytest.mark.anyio


def test_defaults_are_short_and_safe() -> None:
    s = RedisSettings.from_env({})
    assert s.url == "redis://127.0.0.1:6379/0"
    assert s.prefix == "taskforge:"
    assert s.rate_limit_policy == "open"
    assert s.connect_timeout <= 0.5 and s.socket_timeout <= 0.5 and s.deadline <= 1.0
    assert (s.dlq_max_len, s.dlq_max_age) == (10_000, 30 * 86400)


def test_from_env_reads_everything() -> None:
    s = RedisSettings.from_env(
        {
            "REDIS_URL": "rediss://ops:s3cret@redis.infra.svc:6380/3",
            "TASKFORGE_REDIS_PREFIX": "tf-prod:",
            "TASKFORGE_REDIS_POOL_SIZE": "8",
            "TASKFORGE_REDIS_SOCKET_TIMEOUT": "250ms",
            "TASKFORGE_REDIS_CONNECT_TIMEOUT": "0.3",
            "TASKFORGE_REDIS_HEALTH_CHECK_INTERVAL": "30s",
            "TASKFORGE_REDIS_DEADLINE": "2s",
            "TASKFORGE_RATE_LIMIT_POLICY": "Closed",
            "TASKFORGE_DLQ_MAX_LEN": "500",
            "TASKFORGE_DLQ_MAX_AGE": "7d",
        }
    )
    assert s.prefix == "tf-prod:" and s.pool_size == 8
    assert (s.socket_timeout, s.connect_timeout, s.health_check_interval) == (0.25, 0.3, 30.0)
    assert s.deadline == 2.0 and s.rate_limit_policy == "closed"
    assert (s.dlq_max_len, s.dlq_max_age) == (500, 7 * 86400)


def test_describe_never_shows_the_password() -> None:
    s = RedisSettings.from_env({"REDIS_URL": "rediss://ops:s3cret@redis.infra.svc:6380/3"})
    line = s.describe()
    assert "s3cret" not in line
    assert "rediss://redis.infra.svc:6380/3" in line
    assert "tls" in line and "user=ops" in line and "auth=password" in line
    assert "rate-limit-policy=open" in line
    s2 = RedisSettings.from_env({"REDIS_URL": "redis://h", "REDIS_PASSWORD": "pw-from-secret"})
    assert "pw-from-secret" not in s2.describe() and "auth=password" in s2.describe()
    assert s2.server() == "redis://h:6379/0"


@pytest.mark.parametrize(
    "env",
    [
        {"TASKFORGE_RATE_LIMIT_POLICY": "maybe"},
        {"REDIS_URL": "http://redis:6379"},
        {"TASKFORGE_REDIS_SOCKET_TIMEOUT": "soon"},
        {"TASKFORGE_REDIS_POOL_SIZE": "0"},
    ],
)
def test_bad_settings_are_rejected(env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        RedisSettings.from_env(env)


def test_parse_seconds() -> None:
    assert parse_seconds("0.5") == 0.5
    assert parse_seconds("500ms") == 0.5
    assert parse_seconds("1h30m") == 5400
    assert parse_seconds("30d") == 30 * 86400


async def test_ping_and_run(conn: RedisConnection) -> None:
    assert await conn.ping()
    assert conn.healthy
    assert conn.key("x") == conn.settings.prefix + "x"


async def test_unreachable_redis_raises_a_clear_error() -> None:
    # Port 1 on loopback: nothing listens, the connect is refused at once.
    c = RedisConnection(RedisSettings(url="redis://:pw@127.0.0.1:1/0"))
    try:
        with pytest.raises(RedisUnavailableError, match=r"redis://127\.0\.0\.1:1/0") as err:
            await c.run(c.client.ping, "ping")
        assert "pw" not in str(err.value)
        assert not c.healthy and not await c.ping()
    finally:
        await c.aclose()
