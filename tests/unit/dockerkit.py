"""The Dockerfile and .dockerignore, read as Docker and BuildKit read them: shared by the
image tests (test_dockerfile_rules.py, test_dockerfile_entrypoints.py).

No Docker engine exists in CI, so the image is checked from its sources: this module is a
small parser for the subset of the Dockerfile syntax this project uses (anything else fails
loudly) and a matcher for `.dockerignore` patterns, from which the files of the build
context follow. Not a test module; its checks are asserts that carry their own message.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

OPERATOR_COMMAND = "taskforge-operator"
EXECUTOR_COMMAND = "taskforge-executor"


# --- a small Dockerfile parser --------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper-case instruction name (FROM, RUN, COPY, ...)."""
    value: str
    """The arguments, continuation lines joined, comments removed."""
    line: int

    def json_form(self) -> list[str] | None:
        """The exec-form array (`["a", "b"]`), or None for the shell form."""
        text = self.value.strip()
        if not text.startswith("["):
            return None
        try:
            parsed = json.loads(text)
        except ValueError:
            return None
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            return parsed
        return None

    def flags_and_args(self) -> tuple[dict[str, str], list[str]]:
        """`--name=value` flags and the remaining words (COPY, ADD, FROM)."""
        words = self.json_form() or shlex.split(self.value)
        flags: dict[str, str] = {}
        rest: list[str] = []
        for word in words:
            if not rest and word.startswith("--"):
                name, _, val = word[2:].partition("=")
                flags[name] = val
            else:
                rest.append(word)
        return flags, rest

    def pairs(self) -> dict[str, str]:
        """`key=value` pairs of ENV, LABEL and ARG (quotes removed)."""
        out: dict[str, str] = {}
        for word in shlex.split(self.value):
            key, sep, val = word.partition("=")
            if not sep:
                if self.keyword == "ARG":
                    out[key] = ""
                    continue
                raise AssertionError(f"line {self.line}: use the key=value form: {word!r}")
            out[key] = val
        return out


@dataclass
class Stage:
    base: str
    """The FROM image after ARG substitution."""
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def env(self, stage: Stage) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in stage.all("ENV"):
            out.update(ins.pairs())
        return out

    def labels(self, stage: Stage) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in stage.all("LABEL"):
            out.update(ins.pairs())
        return out


_KEYWORDS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
             "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK",
             "SHELL"}


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, instruction text) with continuations joined and comments dropped."""
    lines = text.splitlines()
    escape = "\\"
    index = 0
    # Parser directives: `# key=value` lines at the very top.
    while index < len(lines):
        match = re.fullmatch(r"#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*", lines[index])
        if not match:
            break
        if match.group(1).lower() == "escape":
            escape = match.group(2)
        index += 1
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(lines[index:], start=index + 1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # comments, also between continuation lines
        if not buffer and not stripped:
            continue
        if not buffer:
            start = number
        if stripped.endswith(escape):
            buffer.append(stripped[: -len(escape)])
            continue
        buffer.append(stripped)
        yield start, " ".join(part.strip() for part in buffer if part.strip())
        buffer = []
    assert not buffer, "the Dockerfile ends inside a line continuation"


def _substitute(value: str, args: dict[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in args, f"${name} used in FROM but not declared by a global ARG"
        return args[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, value)


def parse_dockerfile(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, logical in _logical_lines(text):
        keyword, _, value = logical.partition(" ")
        keyword = keyword.upper()
        assert keyword in _KEYWORDS, f"line {line}: unknown instruction {keyword!r}"
        assert "<<" not in value or keyword not in {"RUN", "COPY", "ADD"}, (
            f"line {line}: heredocs are not supported by this parser"
        )
        ins = Instruction(keyword, value.strip(), line)
        if keyword == "FROM":
            flags, words = ins.flags_and_args()
            assert "platform" not in flags or flags["platform"], f"line {line}: empty --platform"
            if len(words) == 3 and words[1].upper() == "AS":
                image, name = words[0], words[2]
            elif len(words) == 1:
                image, name = words[0], None
            else:
                raise AssertionError(f"line {line}: cannot read FROM {value!r}")
            stages.append(Stage(base=_substitute(image, global_args), name=name))
        elif not stages:
            assert keyword == "ARG", f"line {line}: only ARG may come before the first FROM"
            global_args.update(ins.pairs())
        else:
            stages[-1].instructions.append(ins)
    assert stages, "no FROM in the Dockerfile"
    return Dockerfile(global_args=global_args, stages=stages)


# --- .dockerignore, as BuildKit reads it ----------------------------------------------


@dataclass(frozen=True)
class IgnoreRule:
    regex: re.Pattern[str]
    exclude: bool
    text: str


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match plus `**`, as moby/patternmatcher translates them."""
    out = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            body = pattern[i + 1 : end]
            out += "[" + ("^" + body[1:] if body.startswith("^") else body) + "]"
            i = end
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out)


def read_dockerignore(text: str) -> list[IgnoreRule]:
    rules: list[IgnoreRule] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append(IgnoreRule(_glob_regex(pattern), exclude, line))
    return rules


def is_ignored(path: str, rules: list[IgnoreRule]) -> bool:
    """True when the context leaves `path` (relative, '/'-separated) out.

    The last rule that matches the path or one of its parent directories decides,
    like BuildKit's MatchesOrParentMatches.
    """
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for rule in rules:
        if any(rule.regex.fullmatch(c) for c in candidates):
            ignored = rule.exclude
    return ignored


def context_files(sources: list[str], rules: list[IgnoreRule]) -> list[str]:
    """Every file under the given COPY sources that the build context contains."""
    files: list[str] = []
    for source in sources:
        top = ROOT / source
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in paths:
            rel = path.relative_to(ROOT).as_posix()
            if not is_ignored(rel, rules):
                files.append(rel)
    return files


def copy_sources(df: Dockerfile) -> list[tuple[Instruction, list[str]]]:
    """(instruction, sources) of every COPY/ADD that reads the build context."""
    out: list[tuple[Instruction, list[str]]] = []
    for stage in df.stages:
        for ins in stage.instructions:
            if ins.keyword not in {"COPY", "ADD"}:
                continue
            flags, words = ins.flags_and_args()
            if "from" in flags:
                continue  # from another stage or image, not the build context
            assert len(words) >= 2, f"line {ins.line}: {ins.keyword} needs a source and a dest"
            out.append((ins, words[:-1]))
    return out
