"""A run's outputs: the workflow's `outputs: {name: template}`, rendered when the run ends.

Rendered only for a run that succeeded: a failed or cancelled run's steps may have no
outputs to read, and a template error there would only hide the real failure. Every value
is the rendered string, like a step's rendered config; a consumer that wants structure
writes `{{ ... | tojson }}` and parses it (a sub-workflow step's outputs are these strings).

Bounded like everything in status: at most MAX_RUN_OUTPUTS_BYTES of names and values in
all (UTF-8). A run over it, or whose output template fails, ends Failed with the reason
OutputsFailed and a message naming the output, rather than Succeeded with outputs missing:
a caller (a parent workflow, the API) that reads them would otherwise fail later and further
from the cause.
"""

from __future__ import annotations

from typing import Any

from taskforge.engine.sandbox import utf8_size
from taskforge.engine.templating import Renderer, TemplateError, render_config

MAX_RUN_OUTPUTS_BYTES = 16 * 1024
"""Names and values of a run's outputs together, in UTF-8 bytes."""

OUTPUTS_FAILED = "OutputsFailed"


class OutputsError(Exception):
    """The outputs could not be rendered or are too large; the message names the output."""


def render_outputs(
    templates: dict[str, str] | None, context: dict[str, Any], render: Renderer
) -> dict[str, str] | None:
    """The rendered outputs, or None when the workflow declares none.

    Raises OutputsError ("outputs.total: ..."). NeedsWorker (a template that needs real
    Jinja, in a plan on the event loop) passes through: the plan is made again off the loop.
    """
    if not templates:
        return None
    try:
        rendered = render_config(dict(templates), context, render, "outputs")
    except TemplateError as exc:
        raise OutputsError(str(exc)) from exc
    out = {k: v if isinstance(v, str) else str(v) for k, v in rendered.items()}
    size = sum(utf8_size(k) + utf8_size(v) for k, v in out.items())
    if size > MAX_RUN_OUTPUTS_BYTES:
        biggest = max(out, key=lambda k: utf8_size(out[k]))
        raise OutputsError(
            f"outputs: {size:,} bytes in all, over the limit of {MAX_RUN_OUTPUTS_BYTES:,}"
            f" (the largest is outputs.{biggest}, {utf8_size(out[biggest]):,} bytes)")
    return out
