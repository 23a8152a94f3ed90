"""The Taskforge step executor: runs one http, script, log, slack or email step in a Job's pod.

This package is imported by the operator too (for `taskforge_executor.contract`), so this
file stays empty of imports: the operator must not pay for, or depend on, the executor's
runtime libraries.
"""
