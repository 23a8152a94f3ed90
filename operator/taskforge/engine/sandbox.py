"""Jinja's sandbox with caps on what one step's templates may produce and how much work they do.

Jinja's SandboxedEnvironment stops templates from reaching Python internals, but not from
asking for a gigabyte (`{{ 'x' * 30000000 }}`, `{{ 'x'|center(10**9) }}`) or from looping
for minutes (`range(19000)` nested). Such a template must fail its own run, and nothing else.
This module bounds both inside the sandbox, so the answer is a clear TemplateLimitError naming
the cap instead of a killed process:

* output: every rendered string is counted while it streams out of the template and stops at
  MAX_FIELD_BYTES; the whole step config is held to MAX_CONFIG_BYTES by the caller.
* allocation: `*`, `+`, `%` and `**`, the str methods and filters that take a width or a count
  (center, ljust, indent, wordwrap, replace, join, format, batch, slice, ...) and `range` check
  the size of their result *before* computing it.
* work: every loop iteration and every call spends one unit of a per-step budget (MAX_WORK).
  Loops are counted by wrapping each `{% for %}`'s iterable at parse time, because the sandbox
  has no hook for iteration. Recursion ends at Python's recursion limit.

Not everything can be bounded from inside: a single filter call can still be slow (`sum` of
100,000 lists is quadratic) and `~` concatenation in a loop grows memory by doubling. That is
why the operator renders anything beyond plain `{{ a.b }}` lookups in a worker process with a
hard time limit and a memory limit (adapters/template_workers.py, RENDER_TIMEOUT_SECONDS and
WORKER_MEMORY_BYTES below): these in-sandbox caps make the common attacks fail fast and
precisely; the worker makes every other one fail too.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator, Sized
from functools import lru_cache
from typing import Any

from jinja2 import (
    StrictUndefined,
    Template,
    nodes,
    pass_context,
    pass_environment,
    pass_eval_context,
)
from jinja2 import filters as jf
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, Macro
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

KIB = 1024
MAX_FIELD_BYTES = 256 * KIB
"""A rendered string (one field of a step config), in UTF-8 bytes."""
MAX_CONFIG_BYTES = 512 * KIB
"""A step's rendered config as JSON. It travels to the pod in one env var of the Job, where
every `$` is doubled for Kubernetes' `$(VAR)` expansion: 512 KiB can grow to 1 MiB there,
which keeps the Job under etcd's 1.5 MiB object limit (a 4 MB render was refused with 413)."""
MAX_ITEMS = 100_000
"""Items of one list, tuple or range a template builds (Jinja's own MAX_RANGE)."""
MAX_WORK = 1_000_000
"""Work units for all the templates of one step config: a loop iteration costs 1, a call
CALL_COST and a macro call MACRO_COST, about what they take in time (1M units: ~0.3 s)."""
CALL_COST = 4
MACRO_COST = 40
MAX_POWER_BITS = 64 * KIB
"""Bits of an integer `a ** b` (about 20,000 digits; more cannot be printed anyway)."""
MAX_JSON_INDENT = 64
RENDER_TIMEOUT_SECONDS = 2.0
"""Wall-clock limit of one step config rendered in a worker process (adapter-enforced)."""
WORKER_MEMORY_BYTES = 64 * 1024 * KIB
"""Address space a worker may grow by beyond what it has after start-up (adapter-enforced)."""

BUDGET_KEY = "taskforge:budget"  # not a Jinja name: no template can read or replace it
LOOP_FILTER = "taskforge_counted"
COMMENT_START, COMMENT_END = "{##", "##}"


class TemplateError(ValueError):
    """A template could not be rendered; the message names the step and the field path."""


class TemplateLimitError(TemplateError):
    """A template went over a cap on size or work: the run fails and is never retried."""


class Budget:
    """Work units left for one step config; shared by all its fields."""

    __slots__ = ("left",)

    def __init__(self, work: int = MAX_WORK) -> None:
        self.left = work

    def spend(self, units: int = 1) -> None:
        self.left -= units
        if self.left < 0:
            raise TemplateLimitError(f"more than {MAX_WORK} units of work (loop iterations"
                                     " and calls)")


def utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _over(what: str, size: int, limit: int = MAX_FIELD_BYTES) -> TemplateLimitError:
    return TemplateLimitError(f"{what} would produce {size} characters (limit {limit})")


def _check_size(what: str, size: int, limit: int = MAX_FIELD_BYTES) -> None:
    if size > limit:
        raise _over(what, size, limit)


def _check_items(what: str, count: int) -> None:
    if count > MAX_ITEMS:
        raise TemplateLimitError(f"{what} would produce {count} items (limit {MAX_ITEMS})")


def _length(value: Any) -> int:
    return len(value) if isinstance(value, Sized) else 0


def _budget(context: Context) -> Budget | None:
    found = context.get(BUDGET_KEY)
    return found if isinstance(found, Budget) else None


# -- operators ---------------------------------------------------------------------------------

_PRINTF_WIDTH = re.compile(r"%[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_printf(fmt: str, args: Any) -> None:
    """`'%999999999d' % 1` and `'%*d' % (10**9, 1)` allocate a gigabyte."""
    for width, precision in _PRINTF_WIDTH.findall(fmt):
        for spec in (width, precision):
            if spec.isdigit():
                _check_size("a % format width", int(spec))
            elif spec == "*":
                values = args if isinstance(args, tuple) else (args,)
                for v in values:
                    if isinstance(v, int):
                        _check_size("a % format width", abs(v))


def _check_format(fmt: str, args: Iterable[Any]) -> None:
    """str.format's widths (`'{:>999999999}'`), also nested ones (`'{:>{}}'`)."""
    values = list(args)
    for _, _, spec, _ in string.Formatter().parse(fmt):
        if not spec:
            continue
        for number in re.findall(r"\d+", spec):
            _check_size("a format width", int(number))
        if "{" in spec:
            for v in values:
                if isinstance(v, int) and not isinstance(v, bool):
                    _check_size("a format width", abs(v))


def _check_binop(operator: str, left: Any, right: Any) -> None:
    seqs = (str, bytes, list, tuple)
    if operator == "*":
        seq, times = (left, right) if isinstance(left, seqs) else (right, left)
        if isinstance(seq, seqs) and isinstance(times, int):
            if isinstance(seq, str | bytes):
                _check_size("string multiplication", len(seq) * max(times, 0))
            else:
                _check_items("list multiplication", len(seq) * max(times, 0))
    elif operator == "+" and isinstance(left, seqs) and isinstance(right, seqs):
        if isinstance(left, str | bytes):
            _check_size("string concatenation", len(left) + len(right))
        else:
            _check_items("list concatenation", len(left) + len(right))
    elif operator == "%" and isinstance(left, str):
        _check_printf(left, right)
    elif (
        operator == "**" and isinstance(left, int) and isinstance(right, int)
        and abs(left) > 1 and right > 0 and abs(left).bit_length() * right > MAX_POWER_BITS
    ):
        raise TemplateLimitError(f"{left} ** {right} has more than {MAX_POWER_BITS} bits")


# -- str and list methods called from templates ---------------------------------------------------

_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _check_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    owner = getattr(obj, "__self__", None)
    wrapped = getattr(obj, "__wrapped__", None)  # the sandbox's wrapper of str.format
    if wrapped is not None and isinstance(getattr(wrapped, "__self__", None), str):
        _check_format(wrapped.__self__, [*args, *kwargs.values()])
        return
    name = getattr(obj, "__name__", "")
    if isinstance(owner, str):
        if name in _WIDTH_METHODS and args and isinstance(args[0], int):
            _check_size(f"str.{name}", args[0])
        elif name == "expandtabs":
            tab = args[0] if args else kwargs.get("tabsize", 8)
            if isinstance(tab, int):
                _check_size("str.expandtabs", len(owner) + owner.count("\t") * max(tab, 0))
        elif name == "replace" and len(args) >= 2:
            _check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else -1)
        elif name == "join" and args:
            _check_size("str.join", len(owner) * max(_length(args[0]) - 1, 0))
    elif isinstance(owner, list) and name in ("extend", "__iadd__") and args:
        _check_items("list.extend", len(owner) + _length(args[0]))


def _check_replace(s: Any, old: Any, new: Any, count: Any) -> None:
    if not (isinstance(s, str) and isinstance(old, str) and isinstance(new, str)):
        return
    hits = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    _check_size("replace", len(s) + hits * (len(new) - len(old)))


# -- filters -----------------------------------------------------------------------------------


def _center(value: Any, width: int = 80) -> str:
    _check_size("center", int(width))
    return jf.do_center(value, width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    pad = len(width) if isinstance(width, str) else int(width)
    text = str(s)
    _check_size("indent", len(text) + (text.count("\n") + 1) * max(pad, 0))
    return jf.do_indent(s, width, first, blank)


def _wordwrap(  # noqa: PLR0917 - Jinja passes a filter's arguments by position
    environment: Any, s: str, width: int = 79, break_long_words: bool = True,
    wrapstring: str | None = None, break_on_hyphens: bool = True,
) -> str:
    glue = len(wrapstring) if wrapstring is not None else 1
    lines = len(s) // max(int(width), 1) + s.count("\n") + 1
    _check_size("wordwrap", len(s) + lines * glue)
    return jf.do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


def _replace(eval_ctx: EvalContext, s: str, old: str, new: str, count: int | None = None) -> str:
    _check_replace(str(s), str(old), str(new), count)
    return jf.do_replace(eval_ctx, s, old, new, count)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_printf(str(value), tuple(args) or tuple(kwargs.values()))
    return jf.do_format(value, *args, **kwargs)


def _join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "",
          attribute: str | int | None = None) -> str:
    items = list(value)
    _check_items("join", len(items))
    _check_size("join", len(str(d)) * max(len(items) - 1, 0))
    return jf.sync_do_join(eval_ctx, items, d, attribute)


def _batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    _check_items("batch", int(linecount))
    return jf.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
    _check_items("slice", int(slices))
    return jf.sync_do_slice(value, slices, fill_with)


def _tojson(eval_ctx: EvalContext, value: Any, indent: int | None = None) -> Any:
    if indent is not None and int(indent) > MAX_JSON_INDENT:
        raise TemplateLimitError(f"tojson indent {indent} is over {MAX_JSON_INDENT}")
    return jf.do_tojson(eval_ctx, value, indent)


def _counted(context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
    """What every `{% for %}` iterates (see BoundedSandbox._parse): one unit per item."""
    budget = _budget(context)
    if budget is None:
        yield from iterable
        return
    for item in iterable:
        budget.spend()
        yield item


def _range(*args: int) -> range:
    rng = range(*args)
    _check_items("range()", len(rng))
    return rng


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    _check_size("lipsum", int(n) * int(max) * 12)
    return generate_lorem_ipsum(n, html, min, max)


_FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": pass_environment(_wordwrap),
    "replace": pass_eval_context(_replace),
    "format": _format,
    "join": pass_eval_context(_join),
    "batch": _batch,
    "slice": _slice,
    "tojson": pass_eval_context(_tojson),
    LOOP_FILTER: pass_context(_counted),
}


class BoundedSandbox(SandboxedEnvironment):
    """The sandbox plus the size and work checks above (see the module docstring)."""

    # Intercepted operators are also never constant-folded at compile time, so
    # `{{ 9 ** 9 ** 9 }}` cannot hang the compiler either.
    intercepted_binops = frozenset({"*", "+", "%", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters.update(_FILTERS)
        self.globals["range"] = _range
        self.globals["lipsum"] = _lipsum

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = _budget(__context)
        if budget is not None:
            budget.spend(MACRO_COST if isinstance(__obj, Macro) else CALL_COST)
        _check_method(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Wrap every loop's iterable in the counting filter, so loops spend the budget."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, LOOP_FILTER, [], [], None, None,
                                     lineno=loop.lineno)
        return tree


# Jinja's default comment opener `{#` is everyday shell (`${#var}`, `${#arr[@]}`), so a
# script step would fail to render; comments are `{##` ... `##}` instead.
ENV = BoundedSandbox(
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    comment_start_string=COMMENT_START,
    comment_end_string=COMMENT_END,
)


@lru_cache(maxsize=4096)
def compile_template(source: str) -> Template:
    """Compiling costs ~0.2 ms and every replan renders the same sources again."""
    return ENV.from_string(source)


def render_jinja(source: str, variables: dict[str, Any], limit: int = MAX_FIELD_BYTES) -> str:
    """Render through Jinja, stopping as soon as the output passes `limit` bytes.

    `variables` must already hold Jinja's globals (and a Budget under BUDGET_KEY; one is added
    when missing). `new_context(shared=True)` skips the per-render copy of the variables that
    `Template.render` makes: about a quarter of the cost of a small template.
    """
    if BUDGET_KEY not in variables:
        variables = {**variables, BUDGET_KEY: Budget()}
    template = compile_template(source)
    out: list[str] = []
    size = 0
    for chunk in template.root_render_func(template.new_context(variables, shared=True)):
        size += len(chunk)
        if size > limit:
            raise TemplateLimitError(f"rendered output exceeds {limit} bytes")
        out.append(chunk)
    text = "".join(out)
    if size * 4 > limit and utf8_size(text) > limit:
        raise TemplateLimitError(f"rendered output exceeds {limit} bytes")
    return text
