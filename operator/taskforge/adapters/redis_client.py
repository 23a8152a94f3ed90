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

Busy is not down. A burst (50 webhook deliveries at once) once exhausted the pool, and
redis-py's "No connection available" was taken for an outage, so the `open` policy admitted
43 runs against a limit of 30. Now every call first waits for one of ``pool_size`` turns (at
most ``pool_timeout``), *outside* the deadline, so the pool itself never runs dry and waiting
for it never eats into the time the command gets; a call that finds no turn in time raises
:class:`RedisBusyError`. So does a timeout while this process's own event loop was too busy
to read the answer: a heartbeat measures how long the loop stalled during the call, and a
timeout during which it stalled for more than a quarter of the deadline says nothing about
Redis (a burst of 50 deliveries, each parsed and HMAC-checked on the loop, does that). On an
idle loop a timeout is an outage as before (a hung Redis). Limits answer a busy Redis by
refusing and retrying soon, never with the outage policy.
"""

from __future__ import annotations

import asyncio
import logging
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

BEAT = 0.05
"""Seconds between the loop heartbeats that measure how long the event loop stalled."""

_DAYS = re.compile(r"^([0-9]+(?:\.[0-9]+)?)d$")


class RedisCallError(Exception):
    """A Redis call that gave no answer; best-effort callers (releases, renewals, dead-letter
    shipping) catch this and try again later. Limits must tell the two kinds apart."""


class RedisUnavailableError(RedisCallError):
    """Redis could not be reached within the deadline. The message names the server
    (never the password) so an operator log line is actionable on its own. This, and only
    this, is what the rate-limit outage policy (open or closed) applies to."""


class RedisBusyError(RedisCallError):
    """Redis may be fine, but this process could not get a turn to ask it in time (all
    ``pool_size`` connections busy for ``pool_timeout``, or its event loop starved). Never an
    outage: a limit that cannot be checked now is checked again shortly."""


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
    # Calls in flight at once. Sized for a webhook burst: every delivery makes one or two short
    # calls, so 64 lets a burst of 50 proceed without queueing; Redis serves one command at a
    # time anyway, so more connections would add no throughput.
    pool_size: int = 64
    pool_timeout: float = 2.0  # wait for a turn (not counted in the deadline); then busy
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
        """Settings from ``REDIS_URL``, ``TASKFORGE_REDIS_*``, ``TASKFORGE_DLQ_*`` and
        ``TASKFORGE_RATE_LIMIT_*`` (the pydantic-settings model in redis_settings.py); a bad
        value raises RedisSettingsError, a ValueError naming the variable."""
        from taskforge.adapters.redis_settings import load_redis_settings  # noqa: PLC0415

        return load_redis_settings(env)

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
    """An asyncio client over a blocking pool of ``pool_size`` connections. Callers go through
    :meth:`RedisConnection.run`, whose turns keep them from ever waiting on the pool; its
    ``pool_timeout`` is a backstop for direct use, and its "No connection available" is
    reported as busy, not as an outage."""
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
        self.on_change: Callable[[bool], None] | None = None  # told when healthy flips
        self._down_since: float | None = None
        # One turn per pooled connection: a call holds one connection at most (scripts,
        # pipelines and retries are sequential), so a caller holding a turn never waits on
        # the pool. asyncio's Semaphore binds to the running loop lazily.
        self._turns = asyncio.Semaphore(settings.pool_size)
        self._lag = _LoopLag()

    def key(self, suffix: str) -> str:
        return self.settings.prefix + suffix

    async def run(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """Await ``call()`` under the deadline; connection trouble raises RedisUnavailableError.

        Only connection-level failures are translated: a script error or a wrong
        type is a bug and must surface as itself. Raises RedisBusyError when no turn is
        free within ``pool_timeout``, or for a timeout while this process's event loop
        stalled (see the module's docstring): neither says anything about Redis.
        """
        await self._take_turn(what)
        stalled_before = self._lag.stalled()
        started, ok = time.perf_counter(), False
        try:
            async with asyncio.timeout(self.settings.deadline):
                result = await call()
            ok = True
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as err:
            stalled = self._lag.stalled() - stalled_before
            timed_out = isinstance(err, (RedisTimeoutError, TimeoutError))
            if _pool_exhausted(err) or (timed_out and stalled > self.settings.deadline / 4):
                raise RedisBusyError(
                    f"Redis call {what} got no answer in time while this process was busy"
                    f" ({type(err).__name__}; its event loop stalled {stalled:.2f}s)"
                ) from err
            self._mark_down(err)
            raise RedisUnavailableError(
                f"Redis at {self.settings.server()} unreachable during {what}: "
                f"{type(err).__name__}: {err or 'deadline exceeded'}"
            ) from err
        finally:
            self._turns.release()
            _observe(what, time.perf_counter() - started, ok)
        self._mark_up()
        return result

    async def _take_turn(self, what: str) -> None:
        if not self._turns.locked():  # the common case: no timer, no wait
            await self._turns.acquire()
            return
        try:
            async with asyncio.timeout(self.settings.pool_timeout):
                await self._turns.acquire()
        except TimeoutError:
            raise RedisBusyError(
                f"Redis call {what}: all {self.settings.pool_size} connections stayed busy for"
                f" {self.settings.pool_timeout:g}s (TASKFORGE_REDIS_POOL_SIZE)"
            ) from None

    async def ping(self) -> bool:
        """Readiness: True when Redis answers within the deadline."""
        try:
            await self.run(self.client.ping, "ping")
        except RedisCallError:
            return False
        return True

    async def aclose(self) -> None:
        self._lag.stop()
        await self.client.aclose()

    def _mark_down(self, err: BaseException) -> None:
        self.last_error = f"{type(err).__name__}: {err}"
        if self.healthy:
            self.healthy = False
            self._down_since = time.monotonic()
            log.warning("Redis at %s unreachable: %s", self.settings.server(), self.last_error)
            if self.on_change is not None:
                self.on_change(False)

    def _mark_up(self) -> None:
        if not self.healthy:
            down = time.monotonic() - (self._down_since or time.monotonic())
            log.info("Redis at %s reachable again after %.1fs", self.settings.server(), down)
            self.healthy = True
            self._down_since = None
            if self.on_change is not None:
                self.on_change(True)


class _LoopLag:
    """Total seconds the running event loop was late running a heartbeat every BEAT seconds:
    time in which it could not have read any answer. Started lazily on the loop in use."""

    def __init__(self) -> None:
        self._total = 0.0
        self._due = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    def stalled(self) -> float:
        """The running total, including how late the pending heartbeat is right now."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self.stop()
            self._loop, self._due = loop, loop.time() + BEAT
            self._handle = loop.call_at(self._due, self._beat)
        return self._total + max(0.0, loop.time() - self._due)

    def _beat(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self._total += max(0.0, now - self._due)
        self._due = now + BEAT
        self._handle = self._loop.call_at(self._due, self._beat)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._loop = self._handle = None


_OPERATION = re.compile(r"[a-z][a-z-]*(?: [a-z][a-z-]*)*(?= |$)")


def metric_operation(what: str) -> str:
    """The metric label of a call's description: its leading words, without the key or the
    run it names ("slot renew 'k'" -> slot_renew), so the label set stays bounded."""
    found = _OPERATION.match(what)
    return (found.group(0) if found else "other").replace(" ", "_").replace("-", "_")


CallObserver = Callable[[str, float, bool], None]
OBSERVERS: list[CallObserver] = []
"""Told (operation, seconds, ok) after every call: the operator's metrics. A hook rather
than an import, so the CLI (which uses this client too) does not load prometheus_client."""


def _observe(what: str, seconds: float, ok: bool) -> None:
    if OBSERVERS:
        operation = metric_operation(what)
        for observer in OBSERVERS:
            observer(operation, seconds, ok)


def _pool_exhausted(err: BaseException) -> bool:
    """redis-py's BlockingConnectionPool reports a timed-out wait as a ConnectionError("No
    connection available.") raised from the timeout; a real connection failure never is."""
    return isinstance(err, RedisConnectionError) and isinstance(err.__cause__, TimeoutError)
