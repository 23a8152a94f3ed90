"""The executor's exit codes: the contract by which a step pod tells the operator
whether a failed attempt is worth retrying.

They follow BSD sysexits (EX_TEMPFAIL, EX_CONFIG) so they cannot be confused with
a crash (1), a shell error (2) or a signal (128+n), which the operator treats as
pod failures.
"""

from typing import Final

EXIT_OK: Final = 0
"""The step succeeded."""
EXIT_RETRYABLE: Final = 75
"""A transient failure (EX_TEMPFAIL): a retry policy with `on: [Failed]` may retry it."""
EXIT_PERMANENT: Final = 78
"""A permanent failure (EX_CONFIG): retrying the same step cannot help."""
