"""The container image, checked without a Docker engine (none exists in CI).

Two kinds of checks:

* Static rules on `Dockerfile` and `.dockerignore`, read by the small parser below (the
  subset of the Dockerfile syntax this project uses; anything else fails loudly):
  pinned base image, numeric non-root user, no remote ADD, every COPY source present in
  the build context, the CMD is the operator's console script, OCI labels, the ports.
* The image entrypoints (`TestImageEntrypoints`): the wheel is built from exactly the files
  the Dockerfile's build context holds, installed into a fresh virtualenv (its runtime
  dependencies come from the repo's venv), and both console scripts the image runs,
  `taskforge-executor` and `taskforge-operator`, are started from it, with nothing
  written outside a temporary directory (the image runs with a read-only root).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from taskforge.adapters.jobs import NON_ROOT_UID
from taskforge.handlers.config import OperatorConfig
from taskforge_executor.contract import EXECUTOR_COMMAND as CONTRACT_COMMAND

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

EXPECTED_UID = 65532
"""The uid the operator's step pods run as (taskforge.adapters.jobs.NON_ROOT_UID)."""
OPERATOR_COMMAND = "taskforge-operator"
EXECUTOR_COMMAND = "taskforge-executor"
PACKAGE_DIRS = {"taskforge": ROOT / "operator" / "taskforge",
                "taskforge_executor": ROOT / "executor" / "taskforge_executor"}


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


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def ignore_rules() -> list[IgnoreRule]:
    return read_dockerignore(DOCKERIGNORE.read_text())


def _copy_sources(df: Dockerfile) -> list[tuple[Instruction, list[str]]]:
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


# --- the parser itself ----------------------------------------------------------------


def test_parser_reads_continuations_comments_and_args() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=python:3.11.9-slim\n"
        "FROM ${BASE} AS build\n"
        "RUN echo a \\\n"
        "    # a comment inside a continuation\n"
        "    && echo b\n"
        'LABEL a="x y" \\\n'
        "      b=z\n"
        'CMD ["run", "--fast"]\n'
    )
    df = parse_dockerfile(text)
    assert df.global_args == {"BASE": "python:3.11.9-slim"}
    (stage,) = df.stages
    assert (stage.base, stage.name) == ("python:3.11.9-slim", "build")
    assert stage.all("RUN")[0].value == "echo a && echo b"
    assert df.labels(stage) == {"a": "x y", "b": "z"}
    assert stage.all("CMD")[0].json_form() == ["run", "--fast"]
    with pytest.raises(AssertionError):
        parse_dockerfile("FROM x\nFROBNICATE y\n")


def test_dockerignore_matcher_follows_buildkit_rules() -> None:
    rules = read_dockerignore("*\n!keep\n**/__pycache__\n!keep/special.txt\n")
    assert is_ignored("secret.env", rules)
    assert is_ignored("deep/nested/file", rules)
    assert not is_ignored("keep", rules)
    assert not is_ignored("keep/a/b.py", rules)
    assert is_ignored("keep/a/__pycache__/b.pyc", rules)
    assert not is_ignored("keep/special.txt", rules)


# --- the rules ------------------------------------------------------------------------


def test_multi_stage_with_pinned_python_slim_base(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2, "build and runtime stages are expected"
    names = {s.name for s in dockerfile.stages if s.name}
    for stage in dockerfile.stages:
        if stage.base in names:
            continue  # FROM an earlier stage
        image, _, digest = stage.base.partition("@")
        repo, sep, tag = image.rpartition(":")
        assert sep and "/" not in tag, f"{stage.base}: pin the base image by tag"
        assert tag != "latest", f"{stage.base}: 'latest' is not a pin"
        assert repo in {"python", "docker.io/library/python"}, stage.base
        assert re.fullmatch(r"3\.11(\.\d+)?-slim(-[a-z]+)?", tag), (
            f"{stage.base}: expected python 3.11 slim (requires-python is "
            f"{PYPROJECT['project']['requires-python']})"
        )
        assert not digest or re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    final = dockerfile.final
    assert dockerfile.labels(final).get("org.opencontainers.image.base.name", "").endswith(
        final.base
    ), "the base.name label must name the base image actually used"


def test_runs_as_numeric_non_root_user(dockerfile: Dockerfile) -> None:
    users = dockerfile.final.all("USER")
    assert users, "the final stage must set USER"
    user = users[-1].value
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user}: use a numeric uid[:gid]"
    uid, _, gid = user.partition(":")
    assert int(uid) != 0 and (not gid or int(gid) != 0)
    assert int(uid) == EXPECTED_UID, "step pods run as 65532: the image must agree"
    # Nothing after USER may switch back to root.
    after = dockerfile.final.instructions.index(users[-1])
    assert not [i for i in dockerfile.final.instructions[after + 1 :] if i.keyword == "USER"]


def test_operator_step_pods_use_the_image_uid() -> None:
    assert NON_ROOT_UID == EXPECTED_UID


def test_no_remote_add(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        for ins in stage.all("ADD"):
            _, words = ins.flags_and_args()
            for source in words[:-1]:
                assert not re.match(r"^(https?|git|ssh)://|^git@", source), (
                    f"line {ins.line}: ADD of a URL is neither pinned nor verified"
                )


def test_copy_sources_exist_and_are_in_the_build_context(
    dockerfile: Dockerfile, ignore_rules: list[IgnoreRule]
) -> None:
    copies = _copy_sources(dockerfile)
    assert copies, "the image must COPY the project"
    for ins, sources in copies:
        for source in sources:
            assert not re.search(r"[*?\[]", source), f"line {ins.line}: no globs in COPY"
            assert not Path(source).is_absolute() and ".." not in Path(source).parts
            path = ROOT / source
            assert path.exists(), f"line {ins.line}: COPY source {source} is not in the repo"
            assert not is_ignored(source.rstrip("/"), ignore_rules), (
                f"line {ins.line}: {source} is excluded by .dockerignore"
            )
            if path.is_dir():
                assert context_files([source.rstrip("/")], ignore_rules), (
                    f"line {ins.line}: .dockerignore leaves {source} empty"
                )


def test_build_context_keeps_local_state_out(ignore_rules: list[IgnoreRule]) -> None:
    for path in (".venv/bin/python", ".local/kubeconfig", ".git/config", "tests/e2e/x.py",
                 "operator/taskforge/__pycache__/x.cpython-311.pyc", "taskforge.egg-info/x"):
        assert is_ignored(path, ignore_rules), f"{path} must not be in the build context"


def test_cmd_is_the_operator_console_script_and_no_entrypoint(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    assert not final.all("ENTRYPOINT"), "no ENTRYPOINT: Jobs set `command` to the executor"
    cmds = final.all("CMD")
    assert cmds, "the final stage needs a CMD"
    assert cmds[-1].json_form() == [OPERATOR_COMMAND], "CMD must be the exec form"
    scripts: dict[str, str] = PYPROJECT["project"]["scripts"]
    assert scripts.get(OPERATOR_COMMAND) == "taskforge.handlers.main:main"
    assert CONTRACT_COMMAND == EXECUTOR_COMMAND
    assert scripts.get(EXECUTOR_COMMAND) == "taskforge_executor.__main__:main"


def test_runtime_env_is_read_only_root_friendly(dockerfile: Dockerfile) -> None:
    env = dockerfile.env(dockerfile.final)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("HOME") == "/tmp"
    assert env.get("TMPDIR", "/tmp") == "/tmp"
    assert env.get("PATH", "").startswith("/opt/venv/bin:")
    workdirs = dockerfile.final.all("WORKDIR")
    assert not workdirs or workdirs[-1].value in {"/tmp", "/"}
    for ins in dockerfile.final.all("VOLUME"):
        assert ins.value.strip("[]\" ") == "/tmp", "the only writable path is /tmp"


def test_installs_no_dev_extra(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        for ins in stage.all("RUN"):
            assert not re.search(r"\[dev\]|--editable|\s-e\s", ins.value), (
                f"line {ins.line}: the image installs the wheel and its runtime deps only"
            )
    runs = " ".join(i.value for s in dockerfile.stages for i in s.all("RUN"))
    assert "pip wheel --no-deps" in runs and "--no-deps" in runs


def test_oci_labels(dockerfile: Dockerfile) -> None:
    labels = dockerfile.labels(dockerfile.final)
    for key in ("title", "description", "version", "revision", "created", "licenses",
                "source"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"missing OCI label {key}"
    args = {k: v for i in dockerfile.final.all("ARG") for k, v in i.pairs().items()}
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert args.get("VERSION") == PYPROJECT["project"]["version"]
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]["text"]


def test_exposes_the_operator_ports(dockerfile: Dockerfile) -> None:
    exposed = {int(p.split("/")[0]) for i in dockerfile.final.all("EXPOSE")
               for p in i.value.split()}
    defaults = OperatorConfig()
    assert exposed == {defaults.metrics_port, defaults.webhook_port, defaults.health_port}


# --- the image entrypoints, from the wheel the Dockerfile builds ---------------------


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


def _clean_env(home: Path, venv_dir: Path) -> dict[str, str]:
    """The image's runtime environment, with /tmp replaced by a temporary directory."""
    return {
        "PATH": f"{venv_dir / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
    }


@pytest.fixture(scope="module")
def build_context(tmp_path_factory: pytest.TempPathFactory, ignore_rules: list[IgnoreRule],
                  dockerfile: Dockerfile) -> Path:
    """A copy of what the Dockerfile's COPY instructions take from the build context."""
    context = tmp_path_factory.mktemp("context")
    sources = [s.rstrip("/") for _, srcs in _copy_sources(dockerfile) for s in srcs]
    for rel in context_files(sources, ignore_rules):
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, context / rel)
    return context


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory, build_context: Path) -> Path:
    """The wheel `pip wheel --no-deps` builds from that context, as the build stage does."""
    out = tmp_path_factory.mktemp("wheels")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
         "--disable-pip-version-check", "--wheel-dir", str(out), str(build_context)],
        capture_output=True, text=True, timeout=100, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = out.glob("taskforge-*.whl")
    return built


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A fresh venv with only the wheel; the repo venv's site-packages supply its deps."""
    target = tmp_path_factory.mktemp("image-venv") / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(target)
    (site,) = (target / "lib").glob("python3.*/site-packages")
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    # A plain path entry: the repo's editable-install hook (a .pth there) is not run,
    # so `taskforge` can only come from the wheel.
    (site / "zz_repo_dependencies.pth").write_text("\n".join(deps) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"),
         "install", "--no-deps", "--no-index", "--quiet", "--disable-pip-version-check",
         str(wheel)],
        capture_output=True, text=True, timeout=100, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


@pytest.mark.timeout(120)
class TestImageEntrypoints:
    """The image-entrypoint check: what `docker build` would install, run as the image would.

    One wheel build and venv per class (~5 s); the build needs PyPI for the build
    backend (setuptools), like the Dockerfile's own build stage.
    """

    def test_wheel_holds_every_package_file(self, wheel: Path, build_context: Path) -> None:
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
            scripts = archive.read(entry_points).decode()
        for package, source in PACKAGE_DIRS.items():
            directory = build_context / source.relative_to(ROOT)
            assert directory.is_dir(), f"{source} is not in the build context"
            for path in directory.rglob("*"):
                if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                    continue
                rel = f"{package}/{path.relative_to(directory).as_posix()}"
                assert rel in names, f"{rel} is missing from the wheel (package data?)"
        assert f"{OPERATOR_COMMAND} = taskforge.handlers.main:main" in scripts
        assert f"{EXECUTOR_COMMAND} = taskforge_executor.__main__:main" in scripts

    def test_executor_runs_a_log_step(self, image_venv: Path, tmp_path: Path) -> None:
        before = _snapshot(image_venv)
        message = tmp_path / "termination-log"
        env = _clean_env(tmp_path, image_venv)
        env["TASKFORGE_STEP"] = json.dumps(
            {"name": "hello", "type": "log", "config": {"message": "hello from the image"}}
        )
        env["TASKFORGE_TERMINATION_MESSAGE_PATH"] = str(message)
        proc = subprocess.run(
            [EXECUTOR_COMMAND], env=env, cwd=tmp_path, capture_output=True, text=True,
            timeout=30, check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result: dict[str, Any] = json.loads(message.read_text())
        assert result["ok"] is True
        assert result["outputs"]["message"] == "hello from the image"
        assert "hello from the image" in proc.stdout + proc.stderr
        assert _snapshot(image_venv) == before, "the executor wrote into its install tree"

    def test_executor_runs_from_the_wheel_not_the_source_tree(
        self, image_venv: Path, tmp_path: Path
    ) -> None:
        code = ("import taskforge, taskforge_executor; "
                "print(taskforge.__file__); print(taskforge_executor.__file__)")
        proc = subprocess.run(
            [str(image_venv / "bin" / "python"), "-c", code],
            env=_clean_env(tmp_path, image_venv), cwd=tmp_path, capture_output=True,
            text=True, timeout=30, check=True,
        )
        for line in proc.stdout.splitlines():
            assert line.startswith(str(image_venv)), line

    def test_executor_bad_envelope_is_a_permanent_failure(
        self, image_venv: Path, tmp_path: Path
    ) -> None:
        message = tmp_path / "termination-log"
        env = _clean_env(tmp_path, image_venv)
        env["TASKFORGE_STEP"] = "{not json"
        env["TASKFORGE_TERMINATION_MESSAGE_PATH"] = str(message)
        proc = subprocess.run([EXECUTOR_COMMAND], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=30, check=False)
        assert proc.returncode == 78, proc.stdout + proc.stderr
        assert json.loads(message.read_text())["ok"] is False

    def test_operator_starts_and_stops_at_login(self, image_venv: Path, tmp_path: Path) -> None:
        """`taskforge-operator` has no --help: it imports its handlers, configures kopf and
        asks for credentials. Without a cluster it must stop there, quickly, and not with an
        ImportError (a module missing from the wheel) or a configuration error."""
        before = _snapshot(image_venv)
        env = _clean_env(tmp_path, image_venv)
        env.update(
            KUBECONFIG=str(tmp_path / "no-such-kubeconfig"),
            TASKFORGE_METRICS_PORT="off",
            TASKFORGE_WEBHOOK_PORT="off",
            TASKFORGE_HEALTH_PORT="off",
        )
        proc = subprocess.run([OPERATOR_COMMAND], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, check=False)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, output
        assert "ImportError" not in output and "ModuleNotFoundError" not in output, output
        assert "LoginError" in output or "credentials" in output, output
        assert _snapshot(image_venv) == before, "the operator wrote into its install tree"
