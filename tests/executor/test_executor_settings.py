"""The executor's settings (settings.py): typed, complete, and a bad value fails the step at
start-up, permanently, with the variable named in the termination message."""

from __future__ import annotations

import re

import pytest
from taskforge_executor import contract
from taskforge_executor.outcome import StepError
from taskforge_executor.settings import ExecutorSettings, load_settings

from tests.executor.conftest import RunExecutor


def test_defaults_and_values() -> None:
    s = load_settings({})
    assert (s.step, s.run, s.namespace, s.attempt, s.log_format) == (None, "", "", 1, "text")
    assert s.termination_message_path == contract.DEFAULT_TERMINATION_MESSAGE_PATH
    s = load_settings({"TASKFORGE_ATTEMPT": "3", "TASKFORGE_LOG_FORMAT": "JSON",
                       "TASKFORGE_RUN": "r", "TASKFORGE_ATTEMPT_X": "ignored",
                       "TASKFORGE_NAMESPACE": ""})
    assert (s.attempt, s.log_format, s.run, s.namespace) == (3, "json", "r", "")


def test_every_input_of_the_contract_is_a_setting() -> None:
    """Each non-secret TASKFORGE_* input contract.py names has one typed, documented field."""
    inputs = {v for k, v in vars(contract).items()
              if k.startswith("ENV_") and "SECRET" not in k and k != "ENV_RESULT"}
    documented = ExecutorSettings.variables()
    assert set(documented) == inputs
    assert all(doc for _, doc in documented.values())


@pytest.mark.parametrize(("name", "value"), [
    ("TASKFORGE_ATTEMPT", "two"),
    ("TASKFORGE_ATTEMPT", "0"),
    ("TASKFORGE_LOG_FORMAT", "xml"),
])
def test_a_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(StepError, match=re.escape(name)) as caught:
        load_settings({name: value})
    assert not caught.value.retryable


def test_the_step_fails_permanently_naming_the_variable(run_executor: RunExecutor) -> None:
    result = run_executor("log", {"message": "hi"}, env={"TASKFORGE_ATTEMPT": "second"})
    assert result.code == 78, result.stdout
    assert "TASKFORGE_ATTEMPT" in result.message["error"] and "second" in result.message["error"]
    assert "hi" not in result.stdout.splitlines()  # it never ran
