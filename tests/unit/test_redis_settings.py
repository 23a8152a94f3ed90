"""The Redis settings (adapters/redis_settings.py): typed, validated at start-up, documented.

Read from the process environment by pydantic-settings, or from a given mapping alone; a bad
value must raise with the variable named (the operator stops, `taskforge dlq` prints it on one
line), and the README's table must be the one the model generates.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from taskforge.adapters.redis_client import RedisSettings
from taskforge.adapters.redis_settings import (
    RedisSettingsError,
    load_redis_settings,
    settings_table,
    variables,
)

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in variables():
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_dataclass_defaults() -> None:
    assert load_redis_settings() == RedisSettings()
    assert load_redis_settings({}) == RedisSettings()


def test_the_process_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "rediss://h:6380/2")
    monkeypatch.setenv("TASKFORGE_REDIS_DEADLINE", "2s")
    monkeypatch.setenv("TASKFORGE_DLQ_MAX_AGE", "7d")
    monkeypatch.setenv("TASKFORGE_RATE_LIMIT_POLICY", " Closed ")
    monkeypatch.setenv("TASKFORGE_REDIS_PREFIX", "")  # empty: the default, as the chart means
    s = RedisSettings.from_env()
    assert (s.url, s.deadline, s.dlq_max_age) == ("rediss://h:6380/2", 2.0, 7 * 86400.0)
    assert s.rate_limit_policy == "closed" and s.prefix == "taskforge:"


def test_a_given_mapping_is_read_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFORGE_REDIS_POOL_SIZE", "3")
    s = load_redis_settings({"TASKFORGE_REDIS_RETRIES": "0", "TASKFORGE_REDIS_PREFIX": "a:"})
    assert (s.pool_size, s.retries, s.prefix) == (64, 0, "a:")


@pytest.mark.parametrize(("name", "value"), [
    ("REDIS_URL", "http://redis:6379"),
    ("TASKFORGE_REDIS_POOL_SIZE", "0"),
    ("TASKFORGE_REDIS_POOL_SIZE", "many"),
    ("TASKFORGE_REDIS_POOL_TIMEOUT", "0s"),
    ("TASKFORGE_REDIS_SOCKET_TIMEOUT", "soon"),
    ("TASKFORGE_REDIS_CONNECT_TIMEOUT", "-1"),
    ("TASKFORGE_REDIS_HEALTH_CHECK_INTERVAL", "often"),
    ("TASKFORGE_REDIS_RETRIES", "-1"),
    ("TASKFORGE_REDIS_DEADLINE", "1 second"),
    ("TASKFORGE_RATE_LIMIT_POLICY", "maybe"),
    ("TASKFORGE_RATE_LIMIT_CLOSED_RETRY", "x"),
    ("TASKFORGE_DLQ_MAX_LEN", "0"),
    ("TASKFORGE_DLQ_MAX_AGE", "forever"),
])
def test_a_bad_value_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(RedisSettingsError, match=re.escape(name)):
        RedisSettings.from_env()
    with pytest.raises(ValueError, match=re.escape(name)):  # the mapping path too
        load_redis_settings({name: value})


def test_every_variable_has_a_doc_and_is_in_the_table() -> None:
    table = settings_table()
    for name, (_, doc) in variables().items():
        assert doc and f"| `{name}` |" in table


def test_the_readme_table_is_generated_from_the_model() -> None:
    text = README.read_text()
    block = text.split("<!-- redis-settings:start -->\n")[1].split(
        "\n<!-- redis-settings:end -->")[0]
    assert block == settings_table(), "run: python -m taskforge.adapters.redis_settings"
