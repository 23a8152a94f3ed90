"""Deterministic names: the same run, step and attempt always give the same Job name.

This is what makes Job creation idempotent: a replan, a retried API call or an operator
restarted between "create Job" and "patch status" all ask for the same name, and the API
server answers 409 instead of starting a second attempt.

Caveat: `-` joins the parts, so run `a-b` step `c` and run `a` step `b-c` give the same
name in one namespace. The adapter therefore treats a 409 as success only when the
existing Job carries this run's labels; when another run's Job holds the name, the
attempt uses `hashed_job_name` instead, which is just as deterministic (a restarted
operator meets the same foreign Job and makes the same choice) and cannot collide.
"""

from __future__ import annotations

import hashlib
import re

MAX_LABEL = 63
_HASH_LEN = 8
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]+")

LABEL_WORKFLOW = "taskforge.io/workflow"
LABEL_RUN = "taskforge.io/run"
LABEL_STEP = "taskforge.io/step"
LABEL_ATTEMPT = "taskforge.io/attempt"
LABEL_ITEM = "taskforge.io/item"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:_HASH_LEN]


def _dns(text: str) -> str:
    return _NOT_DNS.sub("-", text.lower()).strip("-")


def job_name(run_name: str, step: str, attempt: int) -> str:
    """`<run>-<step>-<attempt>`, or a truncated form with a hash when that is not a DNS label.

    The hash covers the exact inputs, so two long names that share a prefix still differ;
    the attempt stays visible at the end for people reading `kubectl get jobs`.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    wanted = f"{run_name}-{step}-{attempt}"
    if len(wanted) <= MAX_LABEL and _dns(wanted) == wanted:
        return wanted
    return hashed_job_name(run_name, step, attempt)


def hashed_job_name(run_name: str, step: str, attempt: int) -> str:
    """`<run>-<step>` (truncated) `-<hash>-<attempt>`: unique per run, step and attempt.

    The hash covers the parts separately, so `a-b`/`c` and `a`/`b-c` differ here.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    suffix = f"-{_digest(run_name, step, str(attempt))}-{attempt}"
    prefix = _dns(f"{run_name}-{step}")[: MAX_LABEL - len(suffix)].rstrip("-")
    return f"{prefix}{suffix}" if prefix else suffix.lstrip("-")


def item_job_name(run_name: str, step: str, index: int, attempt: int) -> str:
    """The Job of attempt `attempt` of forEach item `index`: always the hashed form, whose
    hash covers `step[index]` (no step name holds `[`), so it cannot meet a plain step's
    readable name in the same run, and the item's index stays visible before the hash."""
    return hashed_job_name(run_name, f"{step}[{index}]", attempt)


def label_value(text: str) -> str:
    """A valid label value for any text: kept when valid, else truncated with a hash."""
    clean = _NOT_LABEL_VALUE.sub("-", text).strip("-_.")
    if clean == text and len(text) <= MAX_LABEL:
        return text
    digest = _digest(text)
    base = clean[: MAX_LABEL - len(digest) - 1].rstrip("-_.")
    return f"{base}-{digest}" if base else digest


def job_labels(workflow: str | None, run_name: str, step: str, attempt: int) -> dict[str, str]:
    """The labels every Job carries, so the adapter can list a run's Jobs with one selector."""
    labels = {
        LABEL_RUN: label_value(run_name),
        LABEL_STEP: label_value(step),
        LABEL_ATTEMPT: str(attempt),
    }
    if workflow:
        labels[LABEL_WORKFLOW] = label_value(workflow)
    return labels
