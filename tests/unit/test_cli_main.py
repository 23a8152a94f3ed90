"""The `taskforge` command as a whole: lazy start-up, help, exit codes, pipes, kind names.

These run the installed entry point in a subprocess where the behaviour is the process's
(what it imports, how it ends on a closed pipe), and typer's CliRunner elsewhere.
"""

from __future__ import annotations

import importlib
import inspect
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from taskforge.cli.listing import KINDS
from taskforge.cli.main import COMMANDS, app
from typer.testing import CliRunner

ROOT_HELP_FILE = Path(importlib.import_module("taskforge.cli").__file__ or "").with_name(
    "_roothelp.py")
HEAVY = ("kubernetes", "lightkube", "httpx2", "rich", "pydantic", "redis", "yaml", "jinja2", "cel",
         "taskforge.api")


def _imports_after(*argv: str) -> set[str]:
    code = (
        "import sys\n"
        "from taskforge.cli import main\n"
        f"sys.argv = ['taskforge', *{list(argv)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(sys.modules), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={"COLUMNS": "100", "PATH": ""})
    return set(proc.stderr.split())


@pytest.mark.parametrize("argv", [["--help"], ["--version"], []])
def test_help_and_version_import_no_heavy_library(argv: list[str]) -> None:
    loaded = _imports_after(*argv)
    assert not [m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY)]


# Each command's help loads typer and the command's own light module, nothing heavy: the
# heavy modules are imported in the commands' bodies.
LIGHT_HELP = [[name] for name in COMMANDS] + [["dlq", "list"], ["dlq", "replay"]]


@pytest.mark.parametrize("command", LIGHT_HELP, ids=" ".join)
def test_command_help_imports_no_heavy_library(command: list[str]) -> None:
    loaded = _imports_after(*command, "--help")
    assert not sorted(m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY))


def _cpu(argv: list[str]) -> float:
    """User + system CPU seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, capture_output=True, check=True, env={"COLUMNS": "100", "PATH": ""})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_command_help_costs_about_typers_own_start_up() -> None:
    """`taskforge run --help` and the like: CPU, not wall time, against a yardstick taken
    in the same moments (a process that only imports typer), best of three each, so a
    loaded machine slows both alike. Lazy, a command's help costs ~1.3x the yardstick;
    with the client and models imported at the top it was ~6x (0.8 s)."""
    entry = "import sys; from taskforge.cli import main; sys.argv[0] = 'taskforge'; main()"
    commands = [["run"], ["list"], ["validate"]]
    yardstick, helps = [], {c[0]: list[float]() for c in commands}
    for _ in range(3):
        yardstick.append(_cpu([sys.executable, "-c", "import typer.main"]))
        for command in commands:
            helps[command[0]].append(_cpu([sys.executable, "-c", entry, *command, "--help"]))
    for name, cpu in helps.items():
        assert min(cpu) < 2.5 * min(yardstick), (name, cpu, yardstick)


def test_version_does_not_even_import_typer() -> None:
    loaded = _imports_after("--version")
    assert "typer" not in loaded and "taskforge.cli.main" not in loaded
    assert "taskforge" in CliRunner().invoke(app, ["--version"]).output


def test_help_at_80_columns_does_not_even_import_typer() -> None:
    assert "typer" not in _imports_after("--help") and "typer" not in _imports_after("-h")


def test_the_kept_root_help_is_typers_own() -> None:
    """_roothelp.py is generated from the app; a command, option or summary changed without
    regenerating it fails here (`python -m taskforge.cli.roothelp` rewrites it)."""
    from taskforge.cli._roothelp import HELP  # noqa: PLC0415
    from taskforge.cli.roothelp import PROGS, render, source  # noqa: PLC0415

    assert set(HELP) == set(PROGS)
    for prog in PROGS:
        assert HELP[prog] == render(prog), "run: python -m taskforge.cli.roothelp"
    assert ROOT_HELP_FILE.read_text() == source()


@pytest.mark.parametrize(("columns", "fast"), [("80", True), ("200", True), ("79", False),
                                               ("50", False)])
@pytest.mark.parametrize("prog", ["taskforge", "kubectl-taskforge"])
def test_root_help_is_the_same_with_or_without_typer(columns: str, fast: bool,
                                                     prog: str) -> None:
    """What `--help` prints before typer is imported is what typer prints, at each width
    (narrower than 80 columns typer answers, as click wraps there)."""
    code = ("import sys\nfrom taskforge.cli import main\n"
            f"sys.argv = [{prog!r}, *sys.argv[1:]]\n"
            "try:\n    main()\nfinally:\n    print('typer' in sys.modules, file=sys.stderr)")
    env = {"COLUMNS": columns, "PATH": ""}
    quick = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True,
                           text=True, check=True, env=env)
    assert quick.stderr.split() == [str(not fast)], quick.stderr
    name = "kubectl taskforge" if prog.startswith("kubectl-") else "taskforge"
    typers = CliRunner().invoke(app, ["--help"], prog_name=name, env={"COLUMNS": columns},
                                terminal_width=max(min(int(columns), 80) - 2, 50))
    assert quick.stdout == typers.stdout


def test_root_help_lists_every_command_with_its_own_summary() -> None:
    """The root help shows COMMANDS' summaries without importing the commands: each must
    still be how the command's docstring starts."""
    for name, (module, attr, summary) in COMMANDS.items():
        target = getattr(importlib.import_module(module), attr)
        doc = target.info.help if isinstance(target, typer.Typer) else inspect.getdoc(target)
        first = " ".join((doc or "").split("\n\n")[0].split())
        assert first.startswith(summary.rstrip(".")), (name, summary, first)
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert all(name in out for name in COMMANDS) and "Exit codes: 0 ok; 1 error" in out


@pytest.mark.parametrize("command", [[], *([n] for n in COMMANDS), ["dlq", "list"]])
def test_help_shows_no_type_next_to_a_flag(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "--help" in result.output


def test_usage_errors_exit_2() -> None:
    assert CliRunner().invoke(app, ["nonsense"]).exit_code == 2
    assert CliRunner().invoke(app, ["list", "--no-such-flag"]).exit_code == 2


def test_the_crd_short_names_name_the_kinds() -> None:
    assert KINDS["tfw"] == KINDS["tfwf"] == KINDS["workflows"]
    assert KINDS["tfr"] == KINDS["tfrun"] == KINDS["runs"]


def test_a_closed_pipe_ends_quietly() -> None:
    """`taskforge ... | head`: the reader is gone before the command writes; no traceback."""
    code = (
        "import sys, typer\n"
        "from taskforge.cli.main import app\n"
        "@app.command('spew')\n"
        "def spew() -> None:\n"
        "    for i in range(100000):\n        print('line', i)\n"
        "sys.argv = ['taskforge', 'spew']\n"
        "app(prog_name='taskforge')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_completion_offers_command_names_without_a_cluster() -> None:
    env = {"_TASKFORGE_COMPLETE": "complete_bash", "COMP_WORDS": "taskforge l",
           "COMP_CWORD": "1", "PATH": "", "KUBECONFIG": "/nonexistent"}
    code = "from taskforge.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=False)
    assert out.stdout.split() == ["list", "logs"], out
    env["COMP_WORDS"], env["COMP_CWORD"] = "taskforge get ", "2"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=False)
    assert out.stdout.strip() == "" and "Traceback" not in out.stderr, out
