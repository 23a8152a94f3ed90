"""How big a workflow may be: the text budget the CRD checks at apply time, and its mirror.

Every string and list of a spec has its own `maxLength` / `maxItems`, but 2,000 steps times
a 64 KiB script is still 128 MiB: per-field caps alone cannot bound a spec. The spec is
copied into the run's status when the run starts (and an inline spec is also in the run's
spec), next to the status of every step, and the whole object must fit in etcd (1.5 MiB per
object; the API server's gRPC client refuses 2 MiB). So the CRD also bounds the sum of the
free text of all steps (scripts, messages, bodies, headers, env, args, ...) with one CEL
rule, and `WorkflowSpec` checks the same sum offline. README "Limits" has the arithmetic.

What CEL cannot see is bounded at run time instead: untyped JSON (an http `json` body,
Slack blocks, param values, a webhook body) is hidden from CEL rules and cannot carry a
`maxLength`. Its containers carry `maxProperties` / `maxItems`; its bytes count in the
operator's check of the whole run object before anything is launched (`engine/sizes.py`),
which fails the run with `StatusTooLarge` instead of leaving it stuck.

Names and `dependsOn` entries are not counted: they are structure, bounded by the number of
steps (2,000), name length (40) and `dependsOn` items (100).
"""

from __future__ import annotations

from collections.abc import Iterable

from taskforge.api.common import EnvVar
from taskforge.api.steps import Step

SPEC_TEXT_MAX_CHARS = 131_072
"""The free text of all steps and finally steps together, in characters (128 Ki)."""

TEXT_FIELDS = (
    "when, scripts, log messages, HTTP URLs, bodies, headers and query, env, command and args,"
    " Slack text, e-mail subject, body and recipients"
)
TEXT_BUDGET_MESSAGE = (
    f"the text of the steps ({TEXT_FIELDS}) may total at most {SPEC_TEXT_MAX_CHARS} characters,"
    " steps and finally together: keep large content in a ConfigMap, a Secret or the image"
)


def _opt(path: str, expr: str) -> str:
    """`expr` when the optional field `path` is set, else 0."""
    return f"(has({path}) ? {expr} : 0)"


def _size_of(path: str) -> str:
    return _opt(path, f"size({path})")


def _strings(path: str) -> str:
    """The characters of an optional list of strings."""
    return _opt(path, f"{path}.map(x, size(x)).sum()")


def _env(path: str) -> str:
    return _opt(path, f"{path}.map(e, size(e.name) + {_size_of('e.value')}).sum()")


def _step_text_cel(s: str) -> str:
    """CEL: the free text of step `s`, exactly as `step_text` counts it."""
    headers = f"{s}.http.headers.map(h, size(h.name) + {_size_of('h.value')}).sum()"
    query = f"{s}.http.query.map(k, size(k) + size({s}.http.query[k])).sum()"
    http = (
        f"size({s}.http.url) + {_size_of(s + '.http.body')}"
        f" + {_opt(s + '.http.headers', headers)} + {_opt(s + '.http.query', query)}"
    )
    container = (
        f"{_strings(f'{s}.container.command')} + {_strings(f'{s}.container.args')}"
        f" + {_env(f'{s}.container.env')}"
    )
    script = f"size({s}.script.source) + {_env(s + '.script.env')}"
    email = f"size({s}.email.subject) + size({s}.email.body) + {s}.email.to.map(x, size(x)).sum()"
    # Exactly one type is set (the Step rule), so a chain of conditionals, whose estimated
    # cost is that of its dearest branch, not the sum of all of them.
    by_type = (
        f"has({s}.http) ? {http} : has({s}.script) ? {script}"
        f" : has({s}.log) ? size({s}.log.message) : has({s}.container) ? {container}"
        f" : has({s}.email) ? {email}"
        f" : has({s}.slack) && has({s}.slack.text) ? size({s}.slack.text) : 0"
    )
    return f"{_size_of(s + '.when')} + ({by_type})"


def text_budget_rule() -> str:
    """CEL over a WorkflowSpec: the text of all steps is within SPEC_TEXT_MAX_CHARS.

    `size()` of a list or string is O(1) in CEL and each list is walked once, so the cost
    is linear in the spec: well inside the apiserver's budget for 2,000 steps.
    """
    each = _step_text_cel("s")
    finally_part = f"(has(self.finally) ? self.finally.map(s, {each}).sum() : 0)"
    return f"self.steps.map(s, {each}).sum() + {finally_part} <= {SPEC_TEXT_MAX_CHARS}"


def _env_text(env: Iterable[EnvVar] | None) -> int:
    return sum(len(e.name) + len(e.value or "") for e in env or ())


def step_text(step: Step) -> int:
    """The free text of one step, in characters (CEL's `size()` counts code points too)."""
    total = len(step.when or "")
    if step.http is not None:
        h = step.http
        total += len(h.url) + len(h.body or "")
        total += sum(len(x.name) + len(x.value or "") for x in h.headers or ())
        total += sum(len(k) + len(v) for k, v in (h.query or {}).items())
    if step.script is not None:
        total += len(step.script.source) + _env_text(step.script.env)
    if step.log is not None:
        total += len(step.log.message)
    if step.container is not None:
        c = step.container
        total += sum(len(x) for x in c.command or ()) + sum(len(x) for x in c.args or ())
        total += _env_text(c.env)
    if step.slack is not None:
        total += len(step.slack.text or "")
    if step.email is not None:
        e = step.email
        total += len(e.subject) + len(e.body) + sum(len(x) for x in e.to)
    return total


def spec_text(steps: Iterable[Step]) -> int:
    """The free text of all the given steps (pass steps and finally steps together)."""
    return sum(step_text(s) for s in steps)
