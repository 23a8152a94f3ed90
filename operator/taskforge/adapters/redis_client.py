"""The operator's one Redis connection: settings from the environment, a bounded pool,
short timeouts and a hard deadline per call.

Redis holds nothing the operator needs for correctness (status is the source of
truth), so the connection is tuned to fail fast rather than to try hard: a Redis
outage must cost a reconcile at most ``deadline`` seconds, never a stalled worker.
redis-py's default (10 retries with backoff, 5 s socket timeouts) would turn one
outage into many seconds per call, so every knob is set here explicitly.

One retry without backoff is kept on purpose: after Redis restarts, every pooled
connection is dead and the first command on each fails with a broken pipe; the
retry reconnects at once, so a restart is invisible to callers instead of costing
one degraded decision per pooled connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskforge.api.durations import format_duration, parse_duration

log = logging.getLogger(__name__)

T = TypeVar("T")
Policy = Literal["open", "closed"]

_DAYS = re.compile(r"^([0-9]+(?:\.[0-9]+)?)d$")


class RedisUnavailableError(Exception):
    """Redis could not be reached within the deadline. The message names the server
    (never the password) so an operator log line is actionable on its own."""


def parse_seconds(text: str) -> float:
    """Seconds from ``"0.5"``, ``"500ms"``, ``"1h30m"`` or ``"30d"``.

    Go-style durations match the CRDs; days are accepted too because retention is
    naturally written in days and Go durations have no unit for them.
    """
    text = text.strip()
    if m := _DAYS.fullmatch(text):
        return float(m.group(1)) * 86400.0
    try:
        return float(text)
    except ValueError:
        return parse_duration(text)


def _days_or_duration(seconds: float) -> str:
    days = seconds / 86400.0
    return f"{days:g}d" if days >= 1 and days == round(days, 3) else format_duration(seconds)


@dataclass(frozen=True)
class RedisSettings:
    """Everything about the Redis connection, read once at start-up."""

    url: str = "redis://127.0.0.1:6379/0"
    password: str | None = None  # overrides the URL's; lets a chart take it from a Secret
    ca_file: str | None = None  # CA bundle for rediss:// with a private CA
    prefix: str = "taskforge:"  # one per installation sharing a Redis
    pool_size: int = 16
    pool_timeout: float = 0.5  # wait for a free pooled connection
    socket_timeout: float = 0.5
    connect_timeout: float = 0.5
    health_check_interval: float = 15.0  # PING idle connections older than this before use
    retries: int = 1
    deadline: float = 1.0  # hard cap on any one adapter call, retries included
    rate_limit_policy: Policy = "open"  # what limits and slots answer while Redis is down
    closed_retry_after: float = 1.0  # requeue delay when failing closed
    dlq_max_len: int = 10_000
    dlq_max_age: float = 30 * 86400.0

    def __post_init__(self) -> None:
        scheme = urlsplit(self.url).scheme
        if scheme not in {"redis", "rediss", "unix"}:
            raise ValueError(f"REDIS_URL must be redis://, rediss:// or unix://, not {scheme!r}")
        if self.rate_limit_policy not in {"open", "closed"}:
            raise ValueError(
                f"rate limit policy must be open or closed, not {self.rate_limit_policy!r}"
            )
        for name in ("pool_size", "dlq_max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("socket_timeout", "connect_timeout", "deadline", "pool_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RedisSettings:
        """Settings from ``REDIS_URL`` and ``TASKFORGE_REDIS_*`` / ``TASKFORGE_DLQ_*``."""
        e = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = e.get(name)
            return value if value not in (None, "") else None

        def seconds(name: str, default: float) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                return parse_seconds(raw)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None

        def integer(name: str, default: int) -> int:
            raw = get(name)
            return default if raw is None else int(raw)

        policy = (get("TASKFORGE_RATE_LIMIT_POLICY") or "open").lower()
        if policy not in ("open", "closed"):
            raise ValueError(f"TASKFORGE_RATE_LIMIT_POLICY must be open or closed, not {policy!r}")
        d = cls()
        return cls(
            url=get("REDIS_URL") or d.url,
            password=get("REDIS_PASSWORD"),
            ca_file=get("TASKFORGE_REDIS_CA_FILE"),
            prefix=e.get("TASKFORGE_REDIS_PREFIX", d.prefix),
            pool_size=integer("TASKFORGE_REDIS_POOL_SIZE", d.pool_size),
            pool_timeout=seconds("TASKFORGE_REDIS_POOL_TIMEOUT", d.pool_timeout),
            socket_timeout=seconds("TASKFORGE_REDIS_SOCKET_TIMEOUT", d.socket_timeout),
            connect_timeout=seconds("TASKFORGE_REDIS_CONNECT_TIMEOUT", d.connect_timeout),
            health_check_interval=seconds(
                "TASKFORGE_REDIS_HEALTH_CHECK_INTERVAL", d.health_check_interval
            ),
            retries=integer("TASKFORGE_REDIS_RETRIES", d.retries),
            deadline=seconds("TASKFORGE_REDIS_DEADLINE", d.deadline),
            rate_limit_policy="open" if policy == "open" else "closed",
            closed_retry_after=seconds("TASKFORGE_RATE_LIMIT_CLOSED_RETRY", d.closed_retry_after),
            dlq_max_len=integer("TASKFORGE_DLQ_MAX_LEN", d.dlq_max_len),
            dlq_max_age=seconds("TASKFORGE_DLQ_MAX_AGE", d.dlq_max_age),
        )

    def server(self) -> str:
        """Where Redis is, for messages: ``redis://host:port/db`` without any credentials."""
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        host = parts.hostname or "localhost"
        if ":" in host:
            host = f"[{host}]"
        port = parts.port or 6379
        db = parts.path.lstrip("/") or "0"
        return f"{parts.scheme}://{host}:{port}/{db}"

    def describe(self) -> str:
        """One start-up log line: where, how, which policy. Never the password."""
        parts = urlsplit(self.url)
        user = f" user={parts.username}" if parts.username else ""
        auth = "password" if (self.password or parts.password) else "none"
        tls = " tls" if parts.scheme == "rediss" else ""
        return (
            f"redis {self.server()}{tls}{user} auth={auth} prefix={self.prefix!r} "
            f"pool={self.pool_size} timeouts(connect={self.connect_timeout:g}s "
            f"socket={self.socket_timeout:g}s deadline={self.deadline:g}s) "
            f"rate-limit-policy={self.rate_limit_policy} "
            f"dlq(max-len={self.dlq_max_len} max-age={_days_or_duration(self.dlq_max_age)})"
        )


def create_client(settings: RedisSettings) -> aioredis.Redis:
    """An asyncio client over a blocking pool: ``pool_size`` connections at most, and a
    caller waits at most ``pool_timeout`` for one rather than opening more."""
    kwargs: dict[str, object] = {
        "max_connections": settings.pool_size,
        "timeout": settings.pool_timeout,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "health_check_interval": settings.health_check_interval,
        "retry": Retry(NoBackoff(), settings.retries),
        "decode_responses": True,
    }
    if settings.password is not None:
        kwargs["password"] = settings.password
    if settings.ca_file is not None:
        kwargs["ssl_ca_certs"] = settings.ca_file
    pool = aioredis.BlockingConnectionPool.from_url(settings.url, **kwargs)
    return aioredis.Redis(connection_pool=pool)


class RedisConnection:
    """The client, the key prefix, and the one place where Redis errors become
    :class:`RedisUnavailableError` after at most ``settings.deadline`` seconds.

    It also logs outages once per transition (down, back up) instead of once per
    call, so a long outage does not flood the operator log.
    """

    def __init__(self, settings: RedisSettings, client: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self.client = client if client is not None else create_client(settings)
        self.healthy = True
        self.last_error: str | None = None
        self._down_since: float | None = None

    def key(self, suffix: str) -> str:
        return self.settings.prefix + suffix

    async def run(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """Await ``call()`` under the deadline; connection trouble raises RedisUnavailableError.

        Only connection-level failures are translated: a script error or a wrong
        type is a bug and must surface as itself.
        """
        try:
            async with asyncio.timeout(self.settings.deadline):
                result = await call()
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as err:
            self._mark_down(err)
            raise RedisUnavailableError(
                f"Redis at {self.settings.server()} unreachable during {what}: "
                f"{type(err).__name__}: {err or 'deadline exceeded'}"
            ) from err
        self._mark_up()
        return result

    async def ping(self) -> bool:
        """Readiness: True when Redis answers within the deadline."""
        try:
            await self.run(self.client.ping, "ping")
        except RedisUnavailableError:
            return False
        return True

    async def aclose(self) -> None:
        await self.client.aclose()

    def _mark_down(self, err: BaseException) -> None:
        self.last_error = f"{type(err).__name__}: {err}"
        if self.healthy:
            self.healthy = False
            self._down_since = time.monotonic()
            log.warning("Redis at %s unreachable: %s", self.settings.server(), self.last_error)

    def _mark_up(self) -> None:
        if not self.healthy:
            down = time.monotonic() - (self._down_since or time.monotonic())
            log.info("Redis at %s reachable again after %.1fs", self.settings.server(), down)
            self.healthy = True
            self._down_since = None
