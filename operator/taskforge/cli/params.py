"""Parameter values from the command line (`-p key=value`) and from `--param-file`.

Values are YAML scalars so that `-p n=3` is a number and `-p debug=true` a boolean, but
with YAML 1.2's core schema rather than PyYAML's YAML 1.1: `-p country=no` stays the
string "no", `-p day=2024-01-02` stays a string (a date would not even be JSON), and
`-p limit=1e3` is a number. Quoting (`-p n='"3"'`) forces a string; `[..]` and `{..}`
give arrays and objects. When the Workflow declares a param as a string, the text is
taken verbatim, so `-p version=1.10` is "1.10", not 1.1.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from taskforge.api.workflow import ParamSpec
from taskforge.cli.errors import CliError
from taskforge.engine.params import ParamsError, resolve_params

_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")


class CoreLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the implicit types of YAML 1.2's core schema only."""


def _int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    return float(str(loader.construct_scalar(node)))  # type: ignore[arg-type]


def _bool(loader: yaml.SafeLoader, node: yaml.Node) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"  # type: ignore[arg-type]


CoreLoader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
    ("tag:yaml.org,2002:bool", _BOOL, "tTfF"),
    ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", _INT, "-+0123456789"),
    ("tag:yaml.org,2002:float", _FLOAT, "-+0123456789."),
):
    CoreLoader.add_implicit_resolver(_tag, _regexp, list(_first))
CoreLoader.add_constructor("tag:yaml.org,2002:int", _int)
CoreLoader.add_constructor("tag:yaml.org,2002:float", _float)
CoreLoader.add_constructor("tag:yaml.org,2002:bool", _bool)


@dataclass(frozen=True)
class ParamValue:
    """A value and, for `-p`, the text it came from (so string params keep it verbatim)."""

    value: Any
    text: str | None = None
    source: str = "-p"


def _unquote(text: str) -> str | None:
    """The string inside YAML quotes, or None when `text` is not one quoted scalar."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        try:
            value = yaml.load(text, Loader=CoreLoader)
        except yaml.YAMLError:
            return None
        return value if isinstance(value, str) else None
    return None


def parse_value(text: str) -> Any:
    """One `-p` value: a YAML 1.2 scalar, a quoted string, or a flow `[..]` / `{..}`."""
    if text == "":
        return ""
    quoted = _unquote(text)
    if quoted is not None:
        return quoted
    try:
        value = yaml.load(text, Loader=CoreLoader)
    except yaml.YAMLError:
        return text
    if isinstance(value, dict | list) and text.lstrip()[:1] not in "[{":
        return text  # `-p msg=a: b` means the text, not a mapping
    if not _is_json(value):
        return text
    return value


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def parse_assignments(items: list[str]) -> dict[str, ParamValue]:
    out: dict[str, ParamValue] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliError(f"-p {item!r}: expected key=value")
        out[key] = ParamValue(parse_value(text), text, "-p")
    return out


def load_param_file(path: Path) -> dict[str, ParamValue]:
    """A YAML (or JSON) mapping of param names to values."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=CoreLoader)
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise CliError(f"{path}: expected a mapping of param names to values")
    if not _is_json(data):
        raise CliError(f"{path}: values must be JSON data (strings, numbers, lists, maps)")
    return {k: ParamValue(v, None, str(path)) for k, v in data.items()}


def resolve(
    given: dict[str, ParamValue], declared: list[dict[str, Any]] | None, workflow: str
) -> dict[str, Any]:
    """The params to put in the run, checked the way the operator will check them.

    The engine's `resolve_params` gives the verdict, so a typo'd, missing or mistyped
    param is a one-line error now instead of a run that fails a moment later. Only the
    given values go into the run: defaults are the operator's to resolve (and pin).
    """
    kinds = {str(p.get("name")): str(p.get("type") or "string") for p in declared or []}
    out: dict[str, Any] = {}
    for name, given_value in given.items():
        value = given_value.value
        if kinds.get(name) == "string" and given_value.text is not None and not isinstance(
            value, str
        ):
            value = given_value.text  # `-p version=1.10` for a string param means "1.10"
        out[name] = value
    try:
        specs = [ParamSpec.model_validate(p) for p in declared or []]
    except ValidationError:
        return out  # an invalid Workflow: its Valid condition and the operator say why
    try:
        resolve_params(specs, out)
    except ParamsError as exc:
        field, _, message = str(exc).partition(": ")
        name = field.removeprefix("spec.params.")
        source = given[name].source if name in given else "-p"
        origin = "" if source == "-p" else f", from {source}"
        if repr(name) not in message:
            message = f"param {name!r}: {message}"
        raise CliError(f"{message} (workflow {workflow}{origin})") from None
    return out
