"""`taskforge validate`: check manifests offline, with errors that name file, line and field.

The documents go through the same pydantic models the operator and the CRD generator use,
then through the engine's DAG check when `taskforge.engine.dag` is importable (cycles,
which neither the models nor CEL can see). Pydantic reports a location as a path
(`spec.steps[1].dependsOn[0]`); to turn it into a line, the YAML is composed into nodes
first (PyYAML's `compose` keeps each node's start mark) and every path is recorded with
the line it starts on. An error whose path does not exist in the file (a missing field)
is reported at its nearest existing parent.

The command itself is in validating.py, which imports this module when it runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from taskforge.api.run import WorkflowRun
from taskforge.api.steps import Step
from taskforge.api.workflow import ParamSpec, Workflow, WorkflowSpec
from taskforge.cli.runs import engine_dag

# Optional like the DAG: `validate` works offline with whatever engine is installed.
engine_validation: ModuleType | None
engine_params: ModuleType | None
try:
    from taskforge.engine import validation as engine_validation
except ImportError:  # pragma: no cover
    engine_validation = None
try:
    from taskforge.engine import params as engine_params
except ImportError:  # pragma: no cover
    engine_params = None

Loc = tuple[str | int, ...]
_MODELS: dict[str, type[BaseModel]] = {"Workflow": Workflow, "WorkflowRun": WorkflowRun}
_SPEC_LOC: dict[str, Loc] = {"Workflow": ("spec",), "WorkflowRun": ("spec", "workflowSpec")}
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class KubeLoader(yaml.SafeLoader):
    """The safe loader without timestamps: like kubectl, `2024-01-02` stays a string."""


KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Finding:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass
class Report:
    """Findings of some documents, plus what a cross-document check needs."""

    findings: list[Finding] = field(default_factory=list)
    valid: list[str] = field(default_factory=list)
    skipped: int = 0
    # (namespace, name) -> declared params, and the runs that reference a workflow by name
    workflows: dict[tuple[str, str], list[ParamSpec]] = field(default_factory=dict)
    run_refs: list[RunRef] = field(default_factory=list)

    def merge(self, other: Report) -> None:
        self.findings += other.findings
        self.valid += other.valid
        self.skipped += other.skipped
        self.workflows.update(other.workflows)
        self.run_refs += other.run_refs


@dataclass(frozen=True)
class RunRef:
    """A valid WorkflowRun naming a Workflow, to check its params if that is in the files."""

    file: str
    lines: dict[Loc, int]
    base: Loc
    namespace: str
    workflow: str
    params: dict[str, Any]


def path_text(loc: Loc) -> str:
    """('spec', 'steps', 1, 'dependsOn', 0) -> 'spec.steps[1].dependsOn[0]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_path(text: str) -> Loc:
    """'spec.steps[1].dependsOn[0]' -> ('spec', 'steps', 1, 'dependsOn', 0)."""
    return tuple(
        int(index) if index else key for key, index in _PATH_PART.findall(text)
    )


def record_lines(node: yaml.Node, base: Loc = ()) -> dict[Loc, int]:
    """Every path in the document with its 1-based line (a key's own line for mappings)."""
    lines: dict[Loc, int] = {base: node.start_mark.line + 1}
    stack: list[tuple[yaml.Node, Loc, frozenset[int]]] = [(node, base, frozenset())]
    while stack:
        current, path, above = stack.pop()
        if id(current) in above:  # an alias pointing at its own ancestor
            continue
        inside = above | {id(current)}
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    stack.append((value_node, path, inside))  # `<<: *base` keys join this map
                    continue
                child = (*path, str(key_node.value))
                lines.setdefault(child, key_node.start_mark.line + 1)
                stack.append((value_node, child, inside))
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                child = (*path, index)
                lines.setdefault(child, item.start_mark.line + 1)
                stack.append((item, child, inside))
    return lines


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _message(error: Any) -> str:
    kind, msg = error["type"], str(error["msg"])
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    return msg.removeprefix("Value error, ")


def _skeleton(raw: Any) -> WorkflowSpec | None:
    """Just names and dependsOn of a spec, unvalidated, for the engine's graph check."""
    if not isinstance(raw, dict):
        return None

    def steps(key: str) -> list[Step] | None:
        items = raw.get(key) or []
        if not isinstance(items, list):
            return None
        out = []
        for item in items:
            deps = item.get("dependsOn") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                return None
            if deps is not None and not (
                isinstance(deps, list) and all(isinstance(d, str) for d in deps)
            ):
                return None
            out.append(Step.model_construct(name=item["name"], depends_on=deps))
        return out

    main, final = steps("steps"), steps("finally")
    if main is None or final is None:
        return None
    return WorkflowSpec.model_construct(steps=main, finally_steps=final or None)


def _locate(problem: str, raw: Any, prefix: Loc) -> tuple[Loc, str]:
    """An engine problem, "spec.steps[1].when: message", as (location in the file, message)."""
    field, _, message = problem.partition(": ")
    loc = parse_path(field)
    loc = (*prefix, *loc[1:]) if loc[:1] == ("spec",) else (*prefix, *loc)
    cycle = message.partition("dependency cycle: ")[2]
    if cycle and isinstance(raw, dict):  # point at the dependsOn of the cycle's first step
        first = cycle.split(" -> ")[0]
        for index, step in enumerate(raw.get(str(loc[-1])) or []):
            if isinstance(step, dict) and step.get("name") == first:
                loc = (*loc, index, "dependsOn")
                break
    return loc, message


def dag_findings(spec: WorkflowSpec | None, raw: Any, prefix: Loc) -> list[tuple[Loc, str]]:
    """The engine's DAG verdict as (location, message); empty when fine or unavailable."""
    if engine_dag is None or spec is None:
        return []
    try:
        engine_dag.build(spec)
    except engine_dag.DagError as exc:
        return [_locate(str(exc), raw, prefix)]
    except Exception:  # a skeleton the engine cannot read: keep pydantic's verdict
        return []
    return []


def engine_findings(spec: WorkflowSpec, raw: Any, prefix: Loc) -> list[tuple[Loc, str]]:
    """What the operator checks beyond the schema, with the very function its validating
    admission webhook and the Workflow's Valid condition use (`validate_workflow`): the
    DAG, `when` expressions, templates (syntax, params, upstream steps), param defaults,
    the cron schedule and time zone."""
    if engine_validation is None:
        return dag_findings(spec, raw, prefix)
    problems = list(engine_validation.validate_workflow(spec))
    return [_locate(problem, raw, prefix) for problem in problems]


def _dig(data: Any, loc: Loc) -> Any:
    for part in loc:
        if isinstance(part, int) and isinstance(data, list) and part < len(data):
            data = data[part]
        elif isinstance(part, str) and isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


def check_document(data: Any, lines: dict[Loc, int], file: str, base: Loc = ()) -> Report:
    """Findings for one document (or each item of a kind: List)."""
    report = Report()
    if not isinstance(data, dict):
        report.findings.append(Finding(file, line_of(lines, base), path_text(base),
                                       "expected a mapping (a Kubernetes object)"))
        return report
    kind, api_version = data.get("kind"), str(data.get("apiVersion", ""))
    if kind == "List" and isinstance(data.get("items"), list):
        for index, item in enumerate(data["items"]):
            report.merge(check_document(item, lines, file, (*base, "items", index)))
        return report
    model = _MODELS.get(str(kind))
    if model is None or not api_version.startswith("taskforge.io/"):
        report.skipped += 1
        return report
    found: list[tuple[Loc, str]] = []
    spec_loc = _SPEC_LOC[str(kind)]
    raw_spec = _dig(data, spec_loc)
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc: Loc = tuple(error["loc"])
            refined = []
            if loc == spec_loc and error["type"] == "value_error":
                refined = dag_findings(_skeleton(raw_spec), raw_spec, spec_loc)
            found += refined or [(loc, _message(error))]
    else:
        wf_spec = obj.spec if isinstance(obj, Workflow) else None
        if isinstance(obj, WorkflowRun):
            wf_spec = obj.spec.workflow_spec
        if wf_spec is not None:
            found += engine_findings(wf_spec, raw_spec, spec_loc)
    meta: dict[str, Any] = data["metadata"] if isinstance(data.get("metadata"), dict) else {}
    if not meta.get("name") and not (kind == "WorkflowRun" and meta.get("generateName")):
        needed = "metadata.name" if kind == "Workflow" else "metadata.name or generateName"
        found.append((("metadata",), f"{needed} is required"))
    for loc, message in found:
        full = (*base, *loc)
        report.findings.append(Finding(file, line_of(lines, full), path_text(full), message))
    if found:
        return report
    report.valid.append(f"{kind} {meta.get('name') or meta.get('generateName')}")
    namespace = str(meta.get("namespace") or "")
    if isinstance(obj, Workflow):
        report.workflows[(namespace, str(meta.get("name")))] = list(obj.spec.params or ())
    elif isinstance(obj, WorkflowRun) and obj.spec.workflow_ref is not None:
        report.run_refs.append(RunRef(file, lines, base, namespace, obj.spec.workflow_ref.name,
                                      dict(obj.spec.params or {})))
    return report


def _documents(text: str) -> Iterator[tuple[Any, dict[Loc, int]]]:
    loader = KubeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            yield loader.construct_document(node), record_lines(node)
    finally:
        loader.dispose()


def check_text(text: str, file: str) -> Report:
    report = Report()
    try:
        for data, lines in _documents(text):
            if data is None:
                continue
            report.merge(check_document(data, lines, file))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
        report.findings.append(Finding(file, line, "", f"invalid YAML: {problem}"))
    except yaml.YAMLError as exc:
        report.findings.append(Finding(file, None, "", f"invalid YAML: {exc}"))
    return report


def expand(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json")
            )
        else:
            yield path


def check_run_params(report: Report) -> list[Finding]:
    """Params of runs against the declarations of workflows found in the same files."""
    if engine_params is None:
        return []
    out = []
    for ref in report.run_refs:
        declared = report.workflows.get((ref.namespace, ref.workflow))
        if declared is None:
            continue
        try:
            engine_params.resolve_params(declared, ref.params)
        except engine_params.ParamsError as exc:
            where, _, message = str(exc).partition(": ")
            loc = (*ref.base, *parse_path(where))
            out.append(Finding(ref.file, line_of(ref.lines, loc), path_text(loc),
                               f"{message} (workflow {ref.workflow})"))
    return out
