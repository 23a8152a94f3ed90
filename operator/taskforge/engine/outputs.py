"""`steps.NAME.outputs` as templates see it: a dict that explains a key it does not have.

Jinja's StrictUndefined says "'dict object' has no attribute 'small'" for a missing key,
which names neither the step nor the reason. A key can be missing because the step never
reported it, because the step has not succeeded, or because the result was larger than the
step's share of status and the whole result could not be loaded (then the key is listed in
`_truncated` with its true size). `StepOutputs.__missing__` returns an Undefined whose hint
says which, so any use of it fails with that message, while `is defined`, `in` and `.get`
keep their usual meaning.

No pydantic here: the template worker process imports this module (via templating).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined

from taskforge.api.resultlog import MORE_KEYS, TRUNCATED_KEY, truncated_keys

UNAVAILABLE_KEY = "_unavailable"
"""Present in a template's copy of a summary whose whole result could not be loaded: why."""
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def key_path(step: str, key: str) -> str:
    """`steps.a.outputs.big`, or `steps['my-step'].outputs['odd key']`, as a user writes it."""
    head = f"steps.{step}" if _PLAIN.match(step) else f"steps[{step!r}]"
    tail = f".{key}" if _PLAIN.match(key) else f"[{key!r}]"
    return f"{head}.outputs{tail}"


class StepOutputs(dict[str, Any]):
    """The outputs of one step, for templates and `when`."""

    __slots__ = ("_phase", "_step")

    def __init__(self, step: str, data: Mapping[str, Any], phase: str = "Succeeded") -> None:
        super().__init__(data)
        self._step = step
        self._phase = phase

    def explain(self, key: str) -> str:
        """Why `key` is not here, naming the step and the key."""
        where = key_path(self._step, str(key))
        note = self.get(UNAVAILABLE_KEY)
        unavailable = f"; the whole result could not be loaded: {note}" if note else ""
        size = truncated_keys(self).get(str(key))
        if size is not None:
            return (f"{where} was truncated ({size:,} bytes; only a summary of the result is"
                    f" kept in the run's status{unavailable})")
        marker = self.get(TRUNCATED_KEY)
        if isinstance(marker, dict) and MORE_KEYS in marker:
            return (f"{where} is absent from the summary in status, which left out"
                    f" {marker[MORE_KEYS]} more truncated keys{unavailable}")
        if self._phase != "Succeeded" and not self:
            return f"{where} is absent: step {self._step!r} is {self._phase} and has no outputs"
        keys = [k for k in self if k not in (TRUNCATED_KEY, UNAVAILABLE_KEY)]
        shown = ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")
        return (f"{where} is absent: step {self._step!r} ({self._phase}) reported"
                f" {'keys ' + shown if keys else 'no outputs'}")

    def __missing__(self, key: str) -> Any:
        return StrictUndefined(hint=self.explain(key), obj=self, name=key)


def wrap_steps(steps: Mapping[str, Any]) -> dict[str, Any]:
    """Plain step entries (as the worker receives them) with their outputs made StepOutputs."""
    out: dict[str, Any] = {}
    for name, entry in steps.items():
        if isinstance(entry, Mapping) and isinstance(entry.get("outputs"), Mapping):
            outputs = entry["outputs"]
            if not isinstance(outputs, StepOutputs):
                phase = str(entry.get("phase") or "Succeeded")
                out[name] = {**entry, "outputs": StepOutputs(name, outputs, phase)}
                continue
        out[name] = entry
    return out
