"""The container image's entrypoints, run as the image would run them, without a Docker
engine (none exists in CI).

Static rules cannot show that the image works: a module or package data file missing from
the wheel, or a console script that writes into its install tree (the image runs with a
read-only root), only shows when the programs start. So the wheel is built from exactly the
files the Dockerfile's build context holds, installed into a fresh virtualenv (its runtime
dependencies come from the repo's venv), and both console scripts the image runs,
`taskforge-executor` and `taskforge-operator`, are started from it, with nothing written
outside a temporary directory. The Dockerfile's own rules: test_dockerfile_rules.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path
from typing import Any

import pytest

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
    parse_dockerfile,
    read_dockerignore,
)

PACKAGE_DIRS = {"taskforge": ROOT / "operator" / "taskforge",
                "taskforge_executor": ROOT / "executor" / "taskforge_executor"}


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def ignore_rules() -> list[IgnoreRule]:
    return read_dockerignore(DOCKERIGNORE.read_text())


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
    sources = [s.rstrip("/") for _, srcs in copy_sources(dockerfile) for s in srcs]
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
