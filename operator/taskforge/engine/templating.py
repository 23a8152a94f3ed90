"""Rendering `{{ ... }}` templates in a step's config just before its Job is created.

Jinja2's SandboxedEnvironment keeps templates from reaching Python internals; StrictUndefined
turns a typo into an error instead of an empty string in a URL. Every string in the step's
type config is rendered, recursively, except references to Secrets and ConfigMaps: the
operator never resolves a secret, the pod reads it at start, so no secret reaches status.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import SandboxedEnvironment

from taskforge.api.steps import Step
from taskforge.engine import simplepaths

# Jinja's default comment opener `{#` is everyday shell (`${#var}`, `${#arr[@]}`), so a
# script step would fail to render; comments are `{##` ... `##}` instead.
COMMENT_START, COMMENT_END = "{##", "##}"
_ENV = SandboxedEnvironment(
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    comment_start_string=COMMENT_START,
    comment_end_string=COMMENT_END,
)
_MARKERS = ("{{", "{%", COMMENT_START)


class TemplateError(ValueError):
    """A template could not be rendered; the message names the step and the field path."""


def is_reference(key: str) -> bool:
    """Keys whose value points at a Secret or ConfigMap (valueFrom, webhookUrlFrom, ...)."""
    return key.endswith("From") or key.endswith("KeyRef")


@lru_cache(maxsize=4096)
def _compile(source: str) -> Template:
    """Compiling costs ~0.2 ms and every replan renders the same sources again."""
    return _ENV.from_string(source)


def render_string(source: str, context: dict[str, Any]) -> str:
    """Render one string; `context` must already hold Jinja's globals (see below).

    `new_context(shared=True)` skips the per-render copy of the variables that
    `Template.render` makes: about a quarter of the cost, paid for every string of every
    step a plan launches.
    """
    if "{" not in source or not any(m in source for m in _MARKERS):
        return source
    pieces = simplepaths.split(source)
    if pieces is not None:
        fast = simplepaths.render(pieces, context)
        if fast is not simplepaths.MISS:
            return str(fast)
    return render_jinja(source, context)


def render_jinja(source: str, context: dict[str, Any]) -> str:
    """Always through Jinja (the reference the fast path is tested against)."""
    template = _compile(source)
    return "".join(template.root_render_func(template.new_context(context, shared=True)))


def _render(value: Any, context: dict[str, Any], path: str) -> Any:
    if isinstance(value, str):
        try:
            return render_string(value, context)
        except Exception as exc:  # any failure inside a user's template is the user's error
            raise TemplateError(f"{path}: {_describe(exc)}") from exc
    if isinstance(value, dict):
        return {
            k: v if is_reference(k) else _render(v, context, f"{path}.{k}")
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_render(v, context, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    lineno = getattr(exc, "lineno", None)
    return f"{text} (line {lineno})" if lineno and lineno > 1 else text


def render_step_config(step: Step, context: dict[str, Any]) -> dict[str, Any]:
    """The step's type config in wire form with every template rendered.

    Raises TemplateError like "step 'post': http.url: 'dict object' has no attribute 'x'".
    """
    step_type = step.step_type
    config = getattr(step, step_type).to_k8s()
    variables = {**_ENV.globals, **context}  # range, dict, namespace... as in render()
    try:
        rendered: dict[str, Any] = _render(config, variables, step_type)
    except TemplateError as exc:
        raise TemplateError(f"step {step.name!r}: {exc}") from exc
    return rendered
