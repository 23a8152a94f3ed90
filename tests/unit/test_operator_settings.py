"""The operator's settings (handlers/config.py): typed, validated at start-up, documented.

A bad value must stop the operator with the variable named, not fall back to a default or
fail later; the README's table must be the one the models generate.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from taskforge.handlers.config import (
    OperatorConfig,
    OperatorSettings,
    SettingsError,
    settings_table,
)

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OperatorSettings.variables():
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    assert OperatorConfig.from_env() == OperatorConfig()


def test_values_are_read_and_shaped(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "TASKFORGE_NAMESPACES": " a, b ,", "TASKFORGE_WORKERS": "3",
        "TASKFORGE_HTTP_PORT": "9000", "TASKFORGE_LOG_FORMAT": "JSON",
        "TASKFORGE_METRICS_WORKFLOW_LABEL": "false", "TASKFORGE_STEP_EVENTS": "false",
        "TASKFORGE_ADMISSION": "Service", "TASKFORGE_JOB_TTL_SECONDS": "off",
        "TASKFORGE_IMAGE_PULL_POLICY": "Never", "TASKFORGE_EXECUTOR_IMAGE": "x:1",
        "TASKFORGE_ADMISSION_PORT": "", "TASKFORGE_ADMISSION_CERT_DIR": "/certs",
    }.items():
        monkeypatch.setenv(name, value)
    config = OperatorConfig.from_env()
    assert config.namespaces == ("a", "b") and config.workers == 3
    assert (config.http_port, config.log_format) == (9000, "json")
    assert not config.metrics_workflow_label
    assert not config.step_events and config.admission == "service"
    assert config.admission_port == 9443  # empty: the default
    assert config.admission_cert_dir == "/certs"
    assert config.jobs.ttl_seconds_after_finished is None
    assert (config.jobs.executor_image, config.jobs.image_pull_policy) == ("x:1", "Never")


@pytest.mark.parametrize(("name", "value"), [
    ("TASKFORGE_WORKERS", "many"), ("TASKFORGE_WORKERS", "0"),
    ("TASKFORGE_HTTP_PORT", "70000"), ("TASKFORGE_HTTP_PORT", "off"),
    ("TASKFORGE_LOG_FORMAT", "xml"), ("TASKFORGE_STEP_EVENTS", "perhaps"),
    ("TASKFORGE_ADMISSION", "bogus"), ("TASKFORGE_IMAGE_PULL_POLICY", "sometimes"),
    ("TASKFORGE_JOB_TTL_SECONDS", "-1"), ("TASKFORGE_ADMISSION_PORT", "none"),
])
def test_a_bad_value_fails_at_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=re.escape(name)):
        OperatorConfig.from_env()


def test_the_readme_table_is_generated_from_the_models() -> None:
    text = README.read_text()
    block = text.split("<!-- operator-settings:start -->\n")[1].split(
        "\n<!-- operator-settings:end -->")[0]
    assert block == settings_table(), "run: python -m taskforge.handlers.config"


def test_every_setting_has_a_doc() -> None:
    assert all(doc for _, doc in OperatorSettings.variables().values())
