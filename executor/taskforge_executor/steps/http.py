"""The `http` step: one HTTP request, its status, chosen headers and body as outputs.

Header values from Secrets arrive as env vars (`TASKFORGE_SECRET_HEADER_<i>`); they are
registered with the redactor before the request is made, so neither a log line nor an
echoing server can carry them into `kubectl logs` or the run's status.
"""

from __future__ import annotations

from typing import Any

from taskforge.api.durations import parse_duration
from taskforge.api.step_types import HttpStep

from taskforge_executor.contract import secret_header_env
from taskforge_executor.httpcall import check_status, send
from taskforge_executor.steps import StepContext
from taskforge_executor.validate import invalid, validate


def _headers(step: HttpStep, ctx: StepContext) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for index, header in enumerate(step.headers or []):
        if header.value_from is not None:
            env_name = secret_header_env(index)
            value = ctx.env.get(env_name)
            if value is None:
                raise invalid(
                    "http",
                    f"headers[{index}].valueFrom: the secret is not wired into the pod"
                    f" ({env_name} is not set)",
                )
            ctx.console.redactor.add(value)
        elif header.value is not None:
            value = header.value
        else:
            raise invalid("http", f"headers[{index}]: set value or valueFrom")
        headers.append((header.name, value))
    return headers


def run(config: Any, ctx: StepContext) -> dict[str, Any]:
    step = validate(HttpStep, config, "http")
    headers = _headers(step, ctx)
    timeout = parse_duration(step.timeout)
    target = f"{step.method} {step.url}"
    if not step.verify_tls:
        ctx.console.warning(f"{target}: TLS certificate verification is off")
    reply = send(
        target=target,
        method=step.method,
        url=step.url,
        timeout=timeout,
        headers=headers,
        params=step.query,
        json_body=step.json_body,
        content=step.body,
        verify=step.verify_tls,
    )
    ctx.console.info(f"{target} -> {reply.status} {reply.reason} in {reply.elapsed_ms} ms")
    kept = {
        name: reply.headers[name] for name in step.response_headers or [] if name in reply.headers
    }
    outputs = {"status": reply.status, "headers": kept, "body": reply.body}
    check_status(reply, target, step.success_codes, outputs)
    return outputs
