"""A run that cannot be stored (engine/sizes.py): the size check and the minimal status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from taskforge.engine.sizes import (
    JOB_TOO_LARGE,
    OBJECT_LIMIT_BYTES,
    STATUS_TOO_LARGE,
    check_job_size,
    check_run_size,
    job_too_large,
    json_size,
    oversize_patch,
    spec_size_problem,
    status_refused,
)

NOW = datetime(2026, 11, 30, 12, 0, 10, tzinfo=UTC)


def _run(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "taskforge.io/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "r", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": spec or {"workflowRef": {"name": "w"}},
    }


def _body_step(chars: int) -> dict[str, Any]:
    return {"name": "post", "http": {"url": "https://x.io", "json": {"blob": "x" * chars}}}


def test_json_size_counts_utf8_bytes_as_stored() -> None:
    assert json_size({"a": "x"}) == len('{"a":"x"}')
    assert json_size({"a": "\u20ac"}) == len('{"a":""}') + 3  # not \\u20ac, not 1


def test_a_small_run_fits() -> None:
    status = {"phase": "Running", "steps": {"a": {"phase": "Running"}}}
    assert check_run_size(_run(), status) is None


def test_pinning_a_huge_untyped_spec_does_not_fit_and_the_message_names_the_big_parts() -> None:
    """The CRD cannot bound an http json body; a 0.8 MB inline spec is stored, but its copy
    in status would double the run past what etcd keeps."""
    spec = {"steps": [_body_step(800_000)]}
    body = _run({"workflowSpec": spec})
    assert json_size(body) < OBJECT_LIMIT_BYTES  # the run itself was accepted
    found = check_run_size(body, {"phase": "Running", "workflowSpec": spec})
    assert found is not None
    assert found.reason == STATUS_TOO_LARGE
    assert "1.53 MiB" in found.message
    assert "status.workflowSpec 781 KiB, spec.workflowSpec 781 KiB" in found.message


def test_the_limit_is_on_the_whole_object() -> None:
    status = {"steps": {"a": {"outputs": {"x": "y" * 1000}}}}
    size = json_size(_run()) + json_size(status)
    assert check_run_size(_run(), status, limit=size) is None
    assert check_run_size(_run(), status, limit=size - 1) is not None


def test_a_job_manifest_is_measured_before_it_is_sent() -> None:
    manifest = {"kind": "Job", "spec": {"env": "z" * 1000}}
    size = json_size(manifest)
    assert check_job_size(manifest, "fetch", 1, limit=size) is None
    found = check_job_size(manifest, "fetch", 1, limit=size - 1)
    assert found is not None and found.reason == JOB_TOO_LARGE
    assert "step 'fetch' (attempt 1)" in found.message and "the Job is 1 KiB" in found.message


def test_a_spec_too_big_to_pin_is_refused_naming_its_largest_part() -> None:
    spec = {"params": [{"name": "p", "default": "d" * 100}],
            "steps": [_body_step(10), _body_step(600_000), _body_step(20)]}
    problem = spec_size_problem(spec)
    assert problem is not None
    assert problem.startswith("spec.steps[1].http.json: the workflow spec is 586 KiB as"
                              " JSON, more than 384 KiB, and this is its largest part (586 KiB)")
    assert spec_size_problem({"steps": [_body_step(390_000)]}) is None


def test_refusals_say_what_was_refused() -> None:
    job = job_too_large("fetch", 2, "500 Internal Server Error: etcdserver: request is too large")
    assert job.reason == JOB_TOO_LARGE
    assert "step 'fetch' (attempt 2)" in job.message and "request is too large" in job.message
    status = status_refused("413 Request Entity Too Large")
    assert status.reason == STATUS_TOO_LARGE and "413" in status.message


def test_the_failing_patch_is_minimal_keeps_the_outbox_and_other_conditions() -> None:
    old = {
        "phase": "Running",
        "startedAt": "2026-11-30T12:00:00Z",
        "workflow": {"name": "w", "generation": 3},
        "workflowSpec": {"steps": [_body_step(10)]},
        "params": {"p": 1},
        "progress": "0/1",
        "steps": {"post": {"phase": "Running", "attempts": 1}},
        "deadLetter": {"id": "x", "step": "a", "error": "e", "attempts": 1,
                       "failedAt": "2026-11-30T12:00:05Z"},
        "conditions": [
            {"type": "Succeeded", "status": "Unknown", "reason": "Running"},
            {"type": "LimitsApplied", "status": "True", "reason": "Enforced"},
        ],
    }
    oversize = status_refused("413 Request Entity Too Large")
    patch = oversize_patch(old, oversize, NOW, generation=1)
    assert patch["phase"] == "Failed"
    assert patch["message"] == oversize.message
    assert patch["startedAt"] == "2026-11-30T12:00:00Z"
    assert patch["finishedAt"] == "2026-11-30T12:00:10.000Z"
    assert patch["duration"] == "10s"
    # the big parts go (null in a merge patch); the outbox and the pinned name stay
    assert {k for k, v in patch.items() if v is None} == {
        "workflowSpec", "steps", "params", "progress"
    }
    assert "deadLetter" not in patch and "workflow" not in patch
    succeeded = [c for c in patch["conditions"] if c["type"] == "Succeeded"]
    assert succeeded == [{
        "type": "Succeeded", "status": "False", "reason": STATUS_TOO_LARGE,
        "message": oversize.message, "lastTransitionTime": "2026-11-30T12:00:10Z",
        "observedGeneration": 1,
    }]
    assert {"type": "LimitsApplied", "status": "True", "reason": "Enforced"} in patch["conditions"]
    assert json_size(patch) < 4096


def test_a_run_failed_before_it_started_gets_a_start_time() -> None:
    patch = oversize_patch({}, status_refused("413"), NOW, generation=2)
    assert patch["startedAt"] == patch["finishedAt"] == "2026-11-30T12:00:10.000Z"
    assert patch["duration"] == "0ms"
    assert not [k for k, v in patch.items() if v is None]
