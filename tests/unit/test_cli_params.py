"""The CLI's parsing of `-p key=value` values, offline: it decides what `taskforge run`
writes into a run.

Values are read as YAML 1.2 scalars (so `no` and `2024-01-02` stay strings), `--param-file`
must hold a mapping, and the given params are resolved against the workflow's declared ones
the way the operator resolves them, so a typo or a wrong type fails before the run exists.
`taskforge validate`: test_cli_validate.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from taskforge.cli.errors import CliError
from taskforge.cli.params import ParamValue, load_param_file, parse_assignments, parse_value
from taskforge.cli.params import resolve as resolve_params

from tests.unit.cli_kit import write


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("-2", -2),
        ("0x1f", 31),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("true", True),
        ("False", False),
        ("null", None),
        ("no", "no"),  # YAML 1.2: not a boolean
        ("on", "on"),
        ("2024-01-02", "2024-01-02"),  # not a date: it must stay JSON
        ("'3'", "3"),
        ('"true"', "true"),
        ("", ""),
        ("hello world", "hello world"),
        ("a: b", "a: b"),  # a mapping only when written as {..}
        ("[1, two]", [1, "two"]),
        ("{a: 1}", {"a": 1}),
        ("[unclosed", "[unclosed"),
        (".inf", ".inf"),
    ],
)
def test_param_values_are_yaml_1_2_scalars(text: str, value: object) -> None:
    got = parse_value(text)
    assert got == value and type(got) is type(value)


def test_param_assignments_and_file(tmp_path: Path) -> None:
    given = parse_assignments(["n=3", "msg=a=b"])
    assert given["n"].value == 3 and given["n"].text == "3"
    assert given["msg"].value == "a=b"
    with pytest.raises(CliError, match="expected key=value"):
        parse_assignments(["novalue"])
    path = write(tmp_path, "p.yaml", "n: 4\nday: 2024-01-02\nflag: yes\n")
    loaded = load_param_file(path)
    assert {k: v.value for k, v in loaded.items()} == {"n": 4, "day": "2024-01-02", "flag": "yes"}
    bad = write(tmp_path, "bad.yaml", "- a\n- b\n")
    with pytest.raises(CliError, match="mapping"):
        load_param_file(bad)


def test_params_resolve_like_the_operator() -> None:
    declared: list[dict[str, Any]] = [
        {"name": "version", "type": "string"},
        {"name": "n", "type": "integer"},
        {"name": "who", "type": "string", "required": True},
    ]
    given = parse_assignments(["version=1.10", "n=3", "who=me"])
    assert resolve_params(given, declared, "wf") == {"version": "1.10", "n": 3, "who": "me"}
    with pytest.raises(CliError, match="unknown param 'typo'"):
        resolve_params({**given, "typo": ParamValue(1)}, declared, "wf")
    with pytest.raises(CliError, match=r"'who'.*required"):
        resolve_params(parse_assignments(["n=1"]), declared, "wf")
    with pytest.raises(CliError, match="expects integer"):
        resolve_params(parse_assignments(["n=x", "who=me"]), declared, "wf")
