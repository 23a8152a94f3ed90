"""The Redis variables (`REDIS_URL`, `TASKFORGE_REDIS_*`, `TASKFORGE_DLQ_*`,
`TASKFORGE_RATE_LIMIT_*`) as a pydantic-settings model.

`RedisEnv` is the one place for each variable: its name (spelt out, so a grep finds it),
type, default and doc. pydantic-settings reads and validates them, so a bad value stops the
operator (or `taskforge dlq`) at start-up with the variable named, in a `RedisSettingsError`,
instead of a bare `int()` traceback. The defaults are `RedisSettings`'s own (the dataclass
the connection takes, which tests and the CLI also build directly). The README's table is
generated from these fields (`python -m taskforge.adapters.redis_settings`), and a test
(tests/unit/test_redis_settings.py) fails when it drifts.

An empty variable means its default, as for the operator's settings (the chart leaves
`TASKFORGE_REDIS_PREFIX` out when its value is empty, which comes to the same).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from taskforge.adapters.redis_client import RedisSettings, _days_or_duration, parse_seconds

_D = RedisSettings()


def _seconds(value: Any) -> Any:
    """"0.5", "500ms", "1h30m" and "30d" (parse_seconds); numbers pass through."""
    return parse_seconds(value) if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _redis_url(value: str) -> str:
    scheme = urlsplit(value).scheme
    if scheme not in {"redis", "rediss", "unix"}:
        raise ValueError(f"must be redis://, rediss:// or unix://, not {scheme!r}")
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]
SecondsOrZero = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]


class RedisSettingsError(ValueError):
    """A Redis variable with a value that cannot be used; the text names it."""


class RedisEnv(BaseSettings):
    """The Redis connection's environment variables."""

    model_config = SettingsConfigDict(env_ignore_empty=True, frozen=True, extra="ignore")

    url: Annotated[str, AfterValidator(_redis_url)] = Field(
        validation_alias="REDIS_URL", default=_D.url,
        description="Redis to use: `redis://`, `rediss://` (TLS) or `unix://`, with password"
        " and db. Unset in the operator: limits are not enforced.")
    password: str | None = Field(
        validation_alias="REDIS_PASSWORD", default=None,
        description="Overrides the URL's password (so a chart can take it from a Secret).")
    ca_file: str | None = Field(
        validation_alias="TASKFORGE_REDIS_CA_FILE", default=None,
        description="CA bundle for `rediss://` with a private CA.")
    prefix: str = Field(
        validation_alias="TASKFORGE_REDIS_PREFIX", default=_D.prefix,
        description="Prefix of every key; one per installation sharing a Redis.")
    pool_size: int = Field(
        validation_alias="TASKFORGE_REDIS_POOL_SIZE", default=_D.pool_size, ge=1,
        description="Redis calls in flight at once.")
    pool_timeout: Seconds = Field(
        validation_alias="TASKFORGE_REDIS_POOL_TIMEOUT", default=_D.pool_timeout,
        description="How long a call waits for its turn (outside the deadline); then busy.")
    socket_timeout: Seconds = Field(
        validation_alias="TASKFORGE_REDIS_SOCKET_TIMEOUT", default=_D.socket_timeout,
        description="Timeout of one read or write on a connection.")
    connect_timeout: Seconds = Field(
        validation_alias="TASKFORGE_REDIS_CONNECT_TIMEOUT", default=_D.connect_timeout,
        description="Timeout of opening a connection.")
    health_check_interval: SecondsOrZero = Field(
        validation_alias="TASKFORGE_REDIS_HEALTH_CHECK_INTERVAL",
        default=_D.health_check_interval,
        description="PING a pooled connection idle longer than this before using it.")
    retries: int = Field(
        validation_alias="TASKFORGE_REDIS_RETRIES", default=_D.retries, ge=0,
        description="Retries of a failed command, without backoff (reconnects after a"
        " restart).")
    deadline: Seconds = Field(
        validation_alias="TASKFORGE_REDIS_DEADLINE", default=_D.deadline,
        description="Hard cap on any one call, retries included.")
    rate_limit_policy: Annotated[Literal["open", "closed"], BeforeValidator(_lower)] = Field(
        validation_alias="TASKFORGE_RATE_LIMIT_POLICY", default=_D.rate_limit_policy,
        description="What limits answer while Redis is down: `open` lets steps run,"
        " `closed` makes them wait.")
    closed_retry_after: Seconds = Field(
        validation_alias="TASKFORGE_RATE_LIMIT_CLOSED_RETRY", default=_D.closed_retry_after,
        description="With `closed`: how soon a held step asks again.")
    dlq_max_len: int = Field(
        validation_alias="TASKFORGE_DLQ_MAX_LEN", default=_D.dlq_max_len, ge=1,
        description="Entries the dead-letter stream keeps at most.")
    dlq_max_age: Seconds = Field(
        validation_alias="TASKFORGE_DLQ_MAX_AGE", default=_D.dlq_max_age,
        description="Age after which dead-letter entries are trimmed.")

    def settings(self) -> RedisSettings:
        return RedisSettings(**self.model_dump())


class _RedisEnvOf(RedisEnv):
    """RedisEnv from a given mapping only (tests, callers with their own environment)."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def load_redis_settings(env: Mapping[str, str] | None = None) -> RedisSettings:
    """RedisSettings from the process environment, or from `env` alone when given; a bad
    value raises RedisSettingsError naming the variable."""
    try:
        if env is None:
            parsed = RedisEnv()
        else:  # only the mapping, not os.environ; empty means the default, as above
            parsed = _RedisEnvOf.model_validate({k: v for k, v in env.items() if v != ""})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors())
        raise RedisSettingsError(f"bad Redis settings: {problems}") from None
    return parsed.settings()


def variables() -> dict[str, tuple[Any, str]]:
    """Each variable's name, default and doc, for the README table."""
    return {str(f.validation_alias): (f.default, f.description or "")
            for f in RedisEnv.model_fields.values()}


def settings_table() -> str:
    """The README's markdown table of the Redis variables."""
    rows = ["| variable | default | what |", "|---|---|---|"]
    seconds = {str(f.validation_alias) for f in RedisEnv.model_fields.values()
               if f.annotation is float}
    for name, (default, doc) in variables().items():
        if default is None:
            shown = "(none)"
        elif name in seconds:
            shown = _days_or_duration(float(default))
        else:
            shown = str(default)
        rows.append(f"| `{name}` | `{shown}` | {doc} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(settings_table())
