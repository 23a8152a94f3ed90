"""A copy of the container's log as the executor writes it, for its termination message.

The run archive keeps every attempt's log. Reading it back from the pod costs a `pods/log`
request through the API server and the kubelet, the largest part of the archive's cost per
run. Most executor steps print a few lines, so the executor keeps a copy of everything it
writes to stdout and stderr, and when the whole log fits beside the result it goes into the
termination message (`KEY_LOG`), which the operator sees anyway.

The copy is all or nothing: past `limit` bytes it is dropped and no log is sent, so the
archive never holds a shortened log that looks whole (it then reads the pod's log as
before). Every write passes through to the real stream and is flushed at once, so stdout
and stderr reach the container log in the order they reach the copy. SIGTERM (the only
signal the executor handles, by raising) drops the copy, since its exception may land
between a write and its copy (__main__.py).
"""

from __future__ import annotations

import io
import sys
import threading
from typing import IO, Any

from taskforge.api.results import TERMINATION_MESSAGE_MAX_BYTES


class LogCopy:
    """The bytes written so far, while they stay within `limit`."""

    def __init__(self, limit: int = TERMINATION_MESSAGE_MAX_BYTES) -> None:
        self.limit = limit
        self._data: bytearray | None = bytearray()

    def add(self, data: bytes) -> None:
        if self._data is None:
            return
        if len(self._data) + len(data) > self.limit:
            self._data = None  # too long for the message: the archive reads the pod's log
        else:
            self._data += data

    def drop(self) -> None:
        """Send no log: a signal may have cut a write between the stream and the copy."""
        self._data = None

    def text(self) -> str | None:
        """The whole log, or None when it outgrew the limit or is not valid UTF-8 (the
        message is JSON text; a replaced byte would make it differ from the pod's log)."""
        if self._data is None:
            return None
        try:
            return self._data.decode("utf-8")
        except UnicodeDecodeError:
            return None


class _Tee(io.BufferedIOBase):
    """Bytes to the real stream (flushed at once) and to the copy."""

    def __init__(self, owner: IO[str], target: IO[bytes], copy: LogCopy) -> None:
        super().__init__()
        self._owner = owner  # collecting the replaced text stream would close `target`
        self._target = target
        self._copy = copy
        self._lock = threading.Lock()  # stdout and stderr share the copy: one order for both

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        with self._lock:
            self._target.write(chunk)
            self._target.flush()
            self._copy.add(chunk)
        return len(chunk)

    def fileno(self) -> int:
        return self._target.fileno()

    @property
    def name(self) -> Any:
        return getattr(self._target, "name", None)


def copying(stream: IO[str], copy: LogCopy) -> IO[str]:
    """`stream` (sys.stdout or sys.stderr) with everything written to it also copied."""
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # not a file (a test's StringIO): nothing to copy from
        return stream
    return io.TextIOWrapper(_Tee(stream, buffer, copy),
                            encoding=getattr(stream, "encoding", "utf-8"),
                            errors=getattr(stream, "errors", "strict"), write_through=True)


def install(limit: int = TERMINATION_MESSAGE_MAX_BYTES) -> LogCopy:
    """Copy everything the executor writes from now on to stdout and stderr (the
    container's log); the step's children reach the log through the executor (script.py)."""
    copy = LogCopy(limit)
    sys.stdout = copying(sys.stdout, copy)
    sys.stderr = copying(sys.stderr, copy)
    return copy
