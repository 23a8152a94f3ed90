"""The executor's human log (stdout, i.e. `kubectl logs`) and secret redaction.

Every line the executor prints and every value it returns passes through one `Redactor`,
which knows the secret values the step was given. Redacting at the exits, rather than
trusting each code path to leave secrets out, also catches secrets that come back from
the outside: a server echoing an Authorization header, an SMTP error quoting a user name,
a script printing its token.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

from taskforge.logs import json_formatter

REDACTED = "[redacted]"


class Redactor:
    """Replaces known secret values in text and in JSON-like structures."""

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add(self, secret: str | None) -> None:
        """Register a secret; the longest are replaced first so no fragment survives."""
        if secret and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def data(self, value: Any) -> Any:
        """Redact strings anywhere in decoded JSON (keys too), before it is serialized.

        Working on the structure rather than the serialized text means a secret containing
        a quote or backslash is still found, and redaction can never break the JSON.
        """
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


class Console:
    """One line per notable thing, `LEVEL message`, flushed at once so logs interleave right.

    Flushing matters: a script's output is written to the same stdout by the executor, and a
    killed pod must still show what happened before the kill.
    """

    def __init__(self, redactor: Redactor, stream: IO[str] | None = None) -> None:
        self.redactor = redactor
        self._stream = stream
        self._json: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def stream(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stdout

    def line(self, level: str, message: str) -> None:
        if self._json is not None:
            self._json.log(getattr(logging, level.upper()), self.redactor.text(message))
        else:
            self.stream.write(f"{level.upper()} {self.redactor.text(message)}\n")
        self.stream.flush()

    def use_json(self, fields: dict[str, Any]) -> None:
        """JSON lines from now on, as the operator logs them (taskforge.logs): the message
        and level, with the run's fields (namespace, workflow, run, step, attempt)."""
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(json_formatter())
        logger = logging.getLogger("taskforge.executor")
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        self._json = logging.LoggerAdapter(logger, fields)

    def debug(self, message: str) -> None:
        self.line("DEBUG", message)

    def info(self, message: str) -> None:
        self.line("INFO", message)

    def warning(self, message: str) -> None:
        self.line("WARNING", message)

    def error(self, message: str) -> None:
        self.line("ERROR", message)

    def raw(self, data: bytes) -> None:
        """Pass a child process's output through (already redacted by the caller)."""
        self.stream.flush()
        buffer = getattr(self.stream, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:
            self.stream.write(data.decode(errors="replace"))
            self.stream.flush()
