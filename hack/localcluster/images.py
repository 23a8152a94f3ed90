"""How the local agent "runs" an image, since it has no container runtime.

An image is matched (shell-style patterns, first rule wins) to a rule that says
what to do with it:

* ``host``: run the container's command as a host process. ``entrypoint`` and
  ``cmd`` play the image's ENTRYPOINT and CMD with Docker's rules when the pod
  omits ``command``/``args``; ``pathPrepend`` puts directories first on PATH
  (``{venv_bin}``: this Python's venv, which has ``taskforge-executor``;
  ``{python_bin}``: a directory with ``python``/``python3`` for the base
  interpreter, standing in for the ``python`` images);
* ``instant``: no process at all; the container "exits" at once with
  ``exitCode`` and ``terminationMessage``, having printed ``log`` (benchmark mode);
* ``reject``: fail the pod with reason ``LocalAgentCannotRunImage``.

An image that matches no rule is rejected too. A JSON or YAML file given with
``--image-config`` adds rules before the built-in ones (``rules: [...]``) or
replaces them (``replaceDefaults: true``).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BENCH_INSTANT_IMAGE = "taskforge.io/bench-instant"
CANNOT_RUN_REASON = "LocalAgentCannotRunImage"
BENCH_INSTANT_LOG = (
    "INFO step s (log) attempt 1 of run bench/run-00000\n"
    "INFO bench step s of run-00000\n"
    "INFO step s succeeded in 0 ms\n"
)
"""What the instant image "prints": an executor's log of a log step, which it also puts in
its termination message as the executor does (logcopy.py), so the benchmarks pay for the
same bytes in pod status as real steps (and the archive, like for them, reads no log)."""

DEFAULT_RULES: list[dict[str, Any]] = [
    {
        "name": "bench-instant",
        "images": [BENCH_INSTANT_IMAGE, f"{BENCH_INSTANT_IMAGE}:*", f"{BENCH_INSTANT_IMAGE}@*"],
        "mode": "instant",
        "exitCode": 0,
        "terminationMessage": json.dumps({"ok": True, "outputs": {}, "log": BENCH_INSTANT_LOG},
                                         separators=(",", ":")),
        "log": BENCH_INSTANT_LOG,
    },
    {
        "name": "taskforge-executor",
        "images": ["*taskforge-executor*", "*taskforge/executor*"],
        "mode": "host",
        "entrypoint": ["taskforge-executor"],
        "pathPrepend": ["{venv_bin}"],
    },
    {
        "name": "python",
        "images": ["python*"],
        "mode": "host",
        "cmd": ["python3"],
        "pathPrepend": ["{python_bin}"],
    },
    {
        "name": "shell",
        "images": ["busybox*", "alpine*", "debian*", "ubuntu*", "bash*"],
        "mode": "host",
        "cmd": ["sh"],
    },
]


@dataclass(frozen=True)
class ImageRule:
    name: str
    images: tuple[str, ...]
    mode: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    path_prepend: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    exit_code: int = 0
    termination_message: str = ""
    log: str = ""

    @staticmethod
    def from_dict(raw: Mapping[str, Any]) -> ImageRule:
        mode = str(raw.get("mode", "host"))
        if mode not in ("host", "instant", "reject"):
            raise ValueError(f"image rule {raw!r}: mode must be host, instant or reject")
        images = raw.get("images") or ([raw["image"]] if "image" in raw else [])
        if not images:
            raise ValueError(f"image rule {raw!r} has no images")
        return ImageRule(
            name=str(raw.get("name", images[0])),
            images=tuple(str(i) for i in images),
            mode=mode,
            entrypoint=tuple(str(a) for a in raw.get("entrypoint") or ()),
            cmd=tuple(str(a) for a in raw.get("cmd") or ()),
            path_prepend=tuple(str(p) for p in raw.get("pathPrepend") or ()),
            env={str(k): str(v) for k, v in (raw.get("env") or {}).items()},
            exit_code=int(raw.get("exitCode", 0)),
            termination_message=str(raw.get("terminationMessage", "")),
            log=str(raw.get("log", "")),
        )

    def matches(self, image: str) -> bool:
        candidates = {image, normalize_image(image)}
        return any(fnmatch.fnmatchcase(c, p) for c in candidates for p in self.images)


@dataclass(frozen=True)
class Launch:
    """What to do for one container: an argv to run on the host, or an instant exit."""

    rule: ImageRule
    argv: tuple[str, ...] = ()


class CannotRunImageError(Exception):
    """The pod fails with reason LocalAgentCannotRunImage and this message."""


def normalize_image(image: str) -> str:
    """``docker.io/library/python:3.11`` -> ``python:3.11`` so short patterns match."""
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if image.startswith(prefix):
            image = image[len(prefix) :]
            break
    return image.removeprefix("library/")


class ImageMap:
    def __init__(self, rules: Sequence[ImageRule]) -> None:
        self.rules = list(rules)

    @staticmethod
    def load(path: Path | None = None) -> ImageMap:
        defaults = [ImageRule.from_dict(r) for r in DEFAULT_RULES]
        if path is None:
            return ImageMap(defaults)
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping with 'rules'")
        extra = [ImageRule.from_dict(r) for r in raw.get("rules") or []]
        return ImageMap(extra if raw.get("replaceDefaults") else extra + defaults)

    def rule_for(self, image: str) -> ImageRule | None:
        return next((r for r in self.rules if r.matches(image)), None)

    def launch(self, container: Mapping[str, Any], command: list[str] | None,
               args: list[str] | None) -> Launch:
        """Docker's ENTRYPOINT/CMD rules applied to the already-expanded command/args."""
        image = str(container.get("image", ""))
        rule = self.rule_for(image)
        if rule is None:
            raise CannotRunImageError(
                f"the local node agent has no mapping for image {image!r}; it runs only "
                "images listed in its image config (executor, python, busybox, alpine, "
                "debian, ubuntu, bash, bench-instant) because there is no container runtime"
            )
        if rule.mode == "reject":
            raise CannotRunImageError(
                f"image {image!r} is rejected by local agent rule {rule.name!r}"
            )
        if rule.mode == "instant":
            return Launch(rule)
        if command:
            argv = [*command, *(args or [])]
        elif args:
            argv = [*rule.entrypoint, *args]
        else:
            argv = [*rule.entrypoint, *rule.cmd]
        if not argv:
            raise CannotRunImageError(
                f"container {container.get('name')!r} of image {image!r} has no command and "
                "the local agent does not know the image's entrypoint; set command/args"
            )
        return Launch(rule, tuple(argv))
