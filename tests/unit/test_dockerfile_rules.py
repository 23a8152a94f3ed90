"""The container image's static rules, checked on `Dockerfile` and `.dockerignore` without a
Docker engine (none exists in CI).

The image runs the operator and every step pod (as uid 65532, with a read-only root), so its
build must be reproducible and safe: pinned base image, numeric non-root user, no remote
ADD, every COPY source present in the build context and no local state in it, the CMD is
the operator's console script, runtime-only dependencies, OCI labels, the operator's ports.
The first two tests check the reader of those files (dockerkit.py) itself.
Running the entrypoints the image holds: test_dockerfile_entrypoints.py.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from taskforge.adapters.jobs import NON_ROOT_UID
from taskforge.handlers.config import OperatorConfig
from taskforge_executor.contract import EXECUTOR_COMMAND as CONTRACT_COMMAND

from tests.unit.dockerkit import (
    DOCKERFILE,
    DOCKERIGNORE,
    EXECUTOR_COMMAND,
    OPERATOR_COMMAND,
    ROOT,
    Dockerfile,
    IgnoreRule,
    context_files,
    copy_sources,
    is_ignored,
    parse_dockerfile,
    read_dockerignore,
)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

EXPECTED_UID = 65532
"""The uid the operator's step pods run as (taskforge.adapters.jobs.NON_ROOT_UID)."""


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def ignore_rules() -> list[IgnoreRule]:
    return read_dockerignore(DOCKERIGNORE.read_text())


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
    copies = copy_sources(dockerfile)
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
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]


def test_exposes_the_operator_ports(dockerfile: Dockerfile) -> None:
    exposed = {int(p.split("/")[0]) for i in dockerfile.final.all("EXPOSE")
               for p in i.value.split()}
    defaults = OperatorConfig()
    assert exposed == {defaults.metrics_port, defaults.webhook_port, defaults.health_port}
