"""What a workflow's templates name, checked before any run: params, steps and variables.

A template that reads `params.undeclared`, or `steps.later` (a step that has not run when
this one starts), renders only at run time, where StrictUndefined stops the run mid-way with
Jinja's wording. The names are all in the template's syntax tree, so they can be checked
when the Workflow is applied (by the validating admission webhook, `taskforge validate` and
the Valid condition, which all call `validation.validate_workflow`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from taskforge.api.steps import Step
from taskforge.api.workflow import WorkflowSpec
from taskforge.engine.dag import Dag
from taskforge.engine.templating import COMMENT_END, COMMENT_START, is_reference

ENV = SandboxedEnvironment(comment_start_string=COMMENT_START, comment_end_string=COMMENT_END)
TEMPLATE_VARIABLES = frozenset({"params", "steps", "run", "trigger"})
"""The names a template sees (engine/context.py), besides Jinja's own globals."""
_MARKERS = ("{{", "{%", COMMENT_START)


def strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every templated string of a step config with its field path (references excluded,
    as the renderer excludes them)."""
    if isinstance(value, str):
        if any(m in value for m in _MARKERS):
            yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            if not is_reference(k):
                yield from strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, f"{path}[{i}]")


def _named(tree: nodes.Template, variable: str) -> Iterator[str]:
    """Constant names read from `variable`: `variable.x` and `variable['x']`."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = getattr(node, "node", None)
        if not isinstance(target, nodes.Name) or target.name != variable:
            continue
        if isinstance(node, nodes.Getattr):
            yield str(node.attr)
        elif isinstance(node, nodes.Getitem):
            arg = node.arg
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                yield arg.value


def _assigned(tree: nodes.Template) -> set[str]:
    """Names the template itself binds (`set`, `for`): those shadow ours, so skip them."""
    return {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}


def upstream(dag: Dag, name: str) -> set[str]:
    """Steps certainly finished when `name` starts: its ancestors, and for a finally step
    every main step too (finally steps start once the main steps are done)."""
    seen: set[str] = set(dag.main) if dag.is_final(name) else set()
    todo = list(dag.deps.get(name, ()))
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(dag.deps.get(dep, ()))
    return seen


ITEM_VARIABLES = frozenset({"item", "index"})
"""What a forEach step's templates see besides TEMPLATE_VARIABLES (engine/fanout.py)."""


def template_problems(source: str, path: str, *, params: frozenset[str], steps: frozenset[str],
                      before: set[str], step: str,
                      extra: frozenset[str] = frozenset()) -> list[str]:
    """Problems of one templated string; [] when it is fine."""
    try:
        tree = ENV.parse(source)
    except TemplateSyntaxError as exc:
        return [f"{path}: template syntax error: {exc.message}"]
    problems: list[str] = []
    shadowed = _assigned(tree)
    # Not meta.find_undeclared_variables: it runs Jinja's code generator, which evaluates
    # constant filter expressions (`{{ ([[1]] * 100000) | sum(start=[]) }}` takes minutes),
    # and this runs on the operator's event loop. Names read minus names bound anywhere in
    # the template never evaluates anything (bounded templates, sandbox.py).
    read = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}
    for name in sorted(read - shadowed - TEMPLATE_VARIABLES - extra - set(ENV.globals)):
        more = ", item and index" if extra else ""
        hint = " (item and index exist in forEach steps)" if name in ITEM_VARIABLES else ""
        problems.append(f"{path}: the template reads {name!r}, which is not defined"
                        f" (templates see params, steps, run{more} and trigger){hint}")
    if "params" not in shadowed:
        for name in dict.fromkeys(_named(tree, "params")):
            if name not in params:
                problems.append(f"{path}: the template reads params.{name}, which spec.params"
                                " does not declare")
    if "steps" not in shadowed:
        for name in dict.fromkeys(_named(tree, "steps")):
            if name not in steps:
                problems.append(f"{path}: the template reads steps.{name}, which is not a step"
                                " of this workflow")
            elif name == step or name not in before:
                problems.append(f"{path}: the template reads steps.{name}, which has not"
                                f" finished when step {step!r} starts (add it to dependsOn)")
    return problems


def step_template_problems(spec: WorkflowSpec, dag: Dag) -> list[str]:
    """Every template problem of every step, each naming its field."""
    params = frozenset(p.name for p in spec.params or ())
    steps = frozenset(dag.steps)
    problems: list[str] = []
    groups: tuple[tuple[str, list[Step]], ...] = (
        ("spec.steps", spec.steps), ("spec.finally", spec.finally_steps or []))
    for group, members in groups:
        for i, step in enumerate(members):
            config = getattr(step, step.step_type).to_k8s()
            extra = ITEM_VARIABLES if step.for_each is not None else frozenset()
            if step.for_each is not None and isinstance(step.for_each.items, str):
                config = {**config, "\0items": step.for_each.items}
            before: set[str] | None = None
            for found, source in strings(config, f"{group}[{i}].{step.step_type}"):
                if before is None:
                    before = upstream(dag, step.name)
                path, names = found, extra
                if found.endswith(".\0items"):  # items render before any item exists
                    path, names = f"{group}[{i}].forEach.items", frozenset[str]()
                problems += template_problems(source, path, params=params, steps=steps,
                                              before=before, step=step.name, extra=names)
    for key, source in (spec.outputs or {}).items():
        for path, text in strings(source, f"spec.outputs.{key}"):
            problems += template_problems(text, path, params=params, steps=steps,
                                          before=set(dag.main), step="")
    return problems
