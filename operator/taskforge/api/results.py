"""The contract between the executor and the operator about how a step attempt ended.

Both sides import these names, so an exit code means the same thing in the pod that writes
it and in the engine that decides whether to retry. The codes follow BSD `sysexits.h`:
75 (EX_TEMPFAIL) for "try again later" and 78 (EX_CONFIG) for "retrying cannot help", so
they cannot be confused with a crash (1), a shell error (2) or a signal (128+n). Those other
codes (a user's container, a killed process) count as retryable failures: the step's retry
policy decides, as a Job's backoffLimit would.
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
"""The step did its work; its outputs are in the termination message."""

EXIT_RETRYABLE: Final = 75
"""A transient failure (timeout, 5xx, 408/429): the retry policy decides about another attempt."""

EXIT_PERMANENT: Final = 78
"""A failure that another attempt cannot fix (malformed config, HTTP 4xx): never retried."""

TERMINATION_MESSAGE_MAX_BYTES: Final = 4096
"""Kubernetes keeps at most 4 KiB of a container's termination message."""

# Keys of the JSON object the executor writes as its termination message.
KEY_OK: Final = "ok"
KEY_OUTPUTS: Final = "outputs"
KEY_ERROR: Final = "error"
KEY_RETRYABLE: Final = "retryable"
KEY_RETRY_AFTER: Final = "retryAfter"
KEY_HTTP_STATUS: Final = "httpStatus"
"""The HTTP status of a failed http or slack step, at the top level rather than only in the
outputs (which may be cut to fit): `retry.on: [HTTPStatus]` decides on it."""
KEY_LOG: Final = "log"
"""The executor's whole log (stdout and stderr as the container printed them, up to its
result) when it fits in the message beside the result: the run archive then takes it from
here instead of reading the pod's log through the API server (docs/archive.md). Left out
when it does not fit, is not valid UTF-8, or anything may have bypassed the executor."""

__all__ = [
    "EXIT_OK",
    "EXIT_PERMANENT",
    "EXIT_RETRYABLE",
    "KEY_ERROR",
    "KEY_HTTP_STATUS",
    "KEY_LOG",
    "KEY_OK",
    "KEY_OUTPUTS",
    "KEY_RETRYABLE",
    "KEY_RETRY_AFTER",
    "TERMINATION_MESSAGE_MAX_BYTES",
]
