"""Rendering `{{ ... }}` templates in a step's config just before its Job is created.

Jinja2's SandboxedEnvironment keeps templates from reaching Python internals; StrictUndefined
turns a typo into an error instead of an empty string in a URL. Every string in the step's
type config is rendered, recursively, except references to Secrets and ConfigMaps: the
operator never resolves a secret, the pod reads it at start, so no secret reaches status.

Where rendering runs. Most templates are plain lookups (`{{ params.x }}`,
`{{ steps.fetch.outputs.body.id }}`); `simplepaths` substitutes those here, in a few
microseconds, with the output cap enforced. Anything that needs real Jinja (filters, loops,
operators) may be hostile, and no check inside the sandbox bounds every loop and filter
(see `sandbox`). So `render_step_config` hands such a config to an injected `Renderer`:

* `render_in_process` renders it here with the same caps: table tests and the engine
  benchmark use it, so they need no mocks, no processes and no clock;
* the operator passes `defer_to_worker` when it plans on its event loop. It raises
  NeedsWorker, and the operator plans again off the loop with a renderer that runs the same
  `render_tree` in a worker process with a time and a memory limit
  (adapters/template_workers.py). The engine never imports that pool: it stays pure, and the
  hot path (plain lookups) pays neither a thread hop nor IPC.

The worker gets a plain, JSON-able context (`plain_context`): only the steps the templates
name, unless they use `steps` in a way that cannot be read off the text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from taskforge.engine import simplepaths
from taskforge.engine.outputs import wrap_steps
from taskforge.engine.sandbox import (
    BUDGET_KEY,
    COMMENT_END,
    COMMENT_START,
    MAX_CONFIG_BYTES,
    MAX_FIELD_BYTES,
    Budget,
    TemplateError,
    TemplateLimitError,
    render_jinja,
    utf8_size,
)
from taskforge.engine.sandbox import ENV as _ENV

if TYPE_CHECKING:  # the worker process imports this module: keep pydantic out of it
    from taskforge.api.steps import Step

__all__ = [
    "COMMENT_END",
    "COMMENT_START",
    "_ENV",
    "NeedsWorker",
    "Renderer",
    "TemplateError",
    "TemplateLimitError",
    "defer_to_worker",
    "is_reference",
    "plain_context",
    "render_config",
    "render_in_process",
    "render_jinja",
    "render_step_config",
    "render_string",
    "render_tree",
]

_MARKERS = ("{{", "{%", COMMENT_START)

Renderer = Callable[[dict[str, Any], dict[str, Any], str], dict[str, Any]]
"""(config in wire form, plain context, root field name) -> the rendered config.

Raises TemplateError / TemplateLimitError with the field path (`log.message: ...`)."""


class NeedsWorker(Exception):  # noqa: N818 - a signal, not an error
    """A config needs real Jinja and the caller asked not to render it here."""


class _NeedsJinja(Exception):  # noqa: N818
    pass


def is_reference(key: str) -> bool:
    """Keys whose value points at a Secret or ConfigMap (valueFrom, webhookUrlFrom, ...)."""
    return key.endswith("From") or key.endswith("KeyRef")


def _has_markers(source: str) -> bool:
    return "{" in source and any(m in source for m in _MARKERS)


def _fast(source: str, context: Mapping[str, Any]) -> str | None:
    pieces = simplepaths.split(source)
    if pieces is None:
        return None
    out = simplepaths.render(pieces, context, MAX_FIELD_BYTES)
    return None if out is simplepaths.MISS else str(out)


def render_string(source: str, context: dict[str, Any]) -> str:
    """Render one string in process; `context` must already hold Jinja's globals."""
    if not _has_markers(source):
        return source
    fast = _fast(source, context)
    return fast if fast is not None else render_jinja(source, context)


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    lineno = getattr(exc, "lineno", None)
    return f"{text} (line {lineno})" if lineno and lineno > 1 else text


class _Walk:
    """One pass over a config: renders strings, counts the output, names failing fields."""

    def __init__(self, variables: dict[str, Any], *, jinja: bool,
                 on_jinja: Callable[[str], None] | None = None) -> None:
        self.variables = variables
        self.jinja = jinja
        self.on_jinja = on_jinja
        self.chars = 0

    def value(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            out = self.string(value, path)
            self.chars += len(out)
            return out
        if isinstance(value, dict):
            return {
                k: v if is_reference(k) else self.value(v, f"{path}.{k}")
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.value(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    def string(self, source: str, path: str) -> str:
        if not _has_markers(source):
            return source
        try:
            out = _fast(source, self.variables)
            if out is None:
                if not self.jinja:
                    raise _NeedsJinja
                if self.on_jinja is not None:
                    self.on_jinja(path)
                out = render_jinja(source, self.variables)
            if len(out) * 4 > MAX_FIELD_BYTES and utf8_size(out) > MAX_FIELD_BYTES:
                raise TemplateLimitError(f"rendered output exceeds {MAX_FIELD_BYTES} bytes")
        except _NeedsJinja:
            raise
        except TemplateError as exc:  # and TemplateLimitError: keep the kind
            raise type(exc)(f"{path}: {exc}") from exc
        except MemoryError as exc:
            raise TemplateLimitError(f"{path}: rendering needs more memory than allowed") from exc
        except RecursionError as exc:
            raise TemplateLimitError(f"{path}: recursion too deep") from exc
        except Exception as exc:  # any failure inside a user's template is the user's error
            raise TemplateError(f"{path}: {_describe(exc)}") from exc
        return out


def _check_config(rendered: dict[str, Any], chars: int, root: str) -> None:
    """The whole config as the JSON the Job carries, once it may be near the cap."""
    if chars * 4 <= MAX_CONFIG_BYTES // 2:  # 4: worst-case UTF-8; 2: room for escapes
        return
    size = utf8_size(json.dumps(rendered, separators=(",", ":"), ensure_ascii=False))
    if size > MAX_CONFIG_BYTES:
        raise TemplateLimitError(f"{root}: rendered config is {size} bytes as JSON, over the limit"
                            f" of {MAX_CONFIG_BYTES}")


def _walk(walk: _Walk, config: dict[str, Any], root: str) -> dict[str, Any]:
    rendered: dict[str, Any] = walk.value(config, root)
    _check_config(rendered, walk.chars, root)
    return rendered


def render_tree(
    config: dict[str, Any], context: Mapping[str, Any], root: str,
    on_jinja: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Render every template in `config` with full Jinja and every cap (one Budget).

    `on_jinja(path)` is told each field about to go through Jinja: a worker reports it, so a
    render that runs out of time can still name the field.
    """
    variables = {**_ENV.globals, **context, BUDGET_KEY: Budget()}
    steps = variables.get("steps")
    if isinstance(steps, Mapping):
        # From a worker's JSON: outputs become StepOutputs again, to explain a missing key.
        variables["steps"] = wrap_steps(steps)
    return _walk(_Walk(variables, jinja=True, on_jinja=on_jinja), config, root)


def render_in_process(
    config: dict[str, Any], context: dict[str, Any], root: str
) -> dict[str, Any]:
    """The Renderer for tests and benchmarks: the caps, but no time or memory limit."""
    return render_tree(config, context, root)


def defer_to_worker(config: dict[str, Any], context: dict[str, Any], root: str) -> NoReturn:
    """The Renderer for a plan on the event loop: real Jinja must not run there."""
    raise NeedsWorker(root)


_STEPS_WORD = re.compile(r"\bsteps\b")
_STEP_REF = re.compile(
    r"\bsteps\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*(?:'([^'\\]*)'|\"([^\"\\]*)\")\s*\])"
)


def _sources(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            if not is_reference(k):
                yield from _sources(v)
    elif isinstance(value, list):
        for v in value:
            yield from _sources(v)


def _named_steps(text: str) -> set[str] | None:
    """Step names used as `steps.NAME` / `steps['NAME']`; None if `steps` is used otherwise."""
    refs = _STEP_REF.findall(text)
    if len(refs) != len(_STEPS_WORD.findall(text)):
        return None
    return {a or b or c for a, b, c in refs}


def plain_context(context: Mapping[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The context as plain dicts, with only the steps the config's templates name.

    A 1,000-step run's `steps` can hold hundreds of KiB of outputs; copying all of it for
    each launched step would make a wide fan-out quadratic.
    """
    out = {k: dict(v) if isinstance(v, Mapping) else v
           for k, v in context.items() if k != "steps"}
    steps = context.get("steps")
    if isinstance(steps, Mapping):
        named = _named_steps("\n".join(s for s in _sources(config) if "steps" in s))
        if named is None or not all(n in steps for n in named):
            named = set(steps)
        out["steps"] = {n: steps[n] for n in named}
    return out


def render_step_config(
    step: Step, context: dict[str, Any], render: Renderer = render_in_process
) -> dict[str, Any]:
    """The step's type config in wire form with every template rendered.

    Plain lookups are rendered here; a config with anything else goes to `render` whole.
    Raises TemplateError like "step 'post': http.url: 'dict object' has no attribute 'x'",
    and TemplateLimitError like "step 'a': script.source: rendered output exceeds 262144 bytes".
    """
    step_type = step.step_type
    config: dict[str, Any] = getattr(step, step_type).to_k8s()
    try:
        return render_config(config, context, render, step_type)
    except TemplateError as exc:
        raise type(exc)(f"step {step.name!r}: {exc}") from exc


def render_config(
    config: dict[str, Any], context: dict[str, Any], render: Renderer, root: str
) -> dict[str, Any]:
    """Any JSON-like config with every template rendered: plain lookups here, the rest by
    `render` (a step's config, a forEach items template, a run's outputs)."""
    try:
        return _walk(_Walk(context, jinja=False), config, root)
    except _NeedsJinja:
        pass
    return render(config, plain_context(context, config), root)
