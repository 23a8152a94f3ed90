"""The template worker process: renders step configs for the operator, one JSON line at a time.

Started by `template_workers.TemplateWorkers` as `python -m taskforge.adapters.template_worker
MEMORY_BYTES`. It imports only Jinja and the engine's templating modules (~20 MiB, ~0.15 s), so
a worker killed for a runaway template is back almost at once. Before it reads any request it
lowers its CPU priority (the operator's event loop comes first on a small node) and caps its
address space at what it has after start-up plus MEMORY_BYTES: a template that allocates past
that gets a MemoryError here (answered as TemplateLimit), never an OOM-killed operator pod.

Protocol, over stdin/stdout, one JSON object per line (JSON never contains a raw newline):
  worker -> {"ready": true}                                  once, after start-up
  operator -> {"config": {...}, "context": {...}, "root": "log"}
  worker -> {"rendering": "log.message"}                    before each field Jinja renders
  worker -> {"ok": {...rendered config...}}
          | {"error": "TemplateLimit" | "TemplateError", "message": "log.message: ..."}
JSON rather than pickle: the operator only ever parses data from the process that ran the
user's template.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from collections.abc import Callable
from typing import IO, Any

from taskforge.engine.sandbox import TemplateError, TemplateLimitError
from taskforge.engine.templating import render_tree


def _vm_size() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def limit_memory(extra: int) -> None:
    """RLIMIT_AS: the address space of now, plus `extra`. Linux only (/proc); elsewhere (a
    developer's Mac) the worker runs without it and says so."""
    size = _vm_size()
    if not size:
        print("template worker: no /proc, no memory limit", file=sys.stderr)
        return
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, size + extra))


def handle(line: bytes, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    root = "config"
    try:
        request = json.loads(line)
        root = str(request["root"])
        return {"ok": render_tree(request["config"], request["context"], root, progress)}
    except TemplateLimitError as exc:
        return {"error": "TemplateLimit", "message": str(exc)}
    except TemplateError as exc:
        return {"error": "TemplateError", "message": str(exc)}
    except MemoryError:
        return {"error": "TemplateLimit", "message": f"{root}: rendering needs more memory"
                " than the template worker may use"}


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    replies.write(b'{"ready": true}\n')
    replies.flush()
    def progress(path: str) -> None:
        replies.write(json.dumps({"rendering": path}).encode() + b"\n")
        replies.flush()

    for line in requests:
        reply = handle(line, progress)
        try:
            data = json.dumps(reply, separators=(",", ":")).encode()
        except MemoryError:
            data = b'{"error": "TemplateLimit", "message": "the reply needs too much memory"}'
        replies.write(data + b"\n")
        replies.flush()


def main() -> None:
    extra = int(sys.argv[1]) if len(sys.argv) > 1 else 64 * 1024 * 1024
    # Replies go to a private copy of stdout; fd 1 becomes stderr, so nothing printed by
    # accident (a warning, a library) can corrupt the protocol.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    os.nice(10)
    limit_memory(extra)
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
