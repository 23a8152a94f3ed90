"""Shell completion, tried in the real shells: bash, zsh and fish each load the script
`taskforge --show-completion SHELL` prints and complete a command line, with run and
workflow names read from the local control plane.

bash is driven through its completion function (COMP_WORDS/COMP_CWORD, as readline sets
them), fish through `complete -C` (what it lists at TAB), and zsh, whose completion runs only
inside its line editor, through a pseudo-terminal (zsh/zpty): an interactive `zsh -f` with
compinit, TAB typed after the line, the listing read back. zsh and fish come from Debian
(hack/setup.sh installs them); a shell that is missing skips its case, saying so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from localcluster.testing import ClusterUnderTest

from tests.e2e.cli_kit import Cli, install_crds, pipeline_cli

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent  # where the `taskforge` console script is

ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty z 'zsh -f -i'
zpty -w z 'PS1="> "; bindkey -e; autoload -Uz compinit; compinit -u -D; \
eval "$(taskforge --show-completion zsh)"; setopt autolist nolistbeep; \
zstyle ":completion:*" list-prompt ""; \
show-line() { zle -I; print -r -- "LINE: $BUFFER :END"; }; zle -N show-line; \
bindkey "^X" show-line; print RE""ADY'
zpty -r z ignored '*READY*'
# TAB, then ^X (typed ahead, so handled once the completion is done) prints the edited line
zpty -w -n z "$1"$'\t\x18'
out=""
for i in {1..240}; do
  sleep 0.25
  while zpty -r -t z chunk; do out+=$chunk; done
  [[ $out == *LINE:*:END* ]] && break
done
print -r -- "$out"
zpty -d z
"""


@pytest.fixture(scope="module")
def crds(cluster: ClusterUnderTest) -> ClusterUnderTest:
    return install_crds(cluster)


@pytest.fixture
def cli(crds: ClusterUnderTest, namespace: str) -> Iterator[Cli]:
    yield pipeline_cli(crds, namespace)


def _env(cli: Cli) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "KUBECONFIG": str(cli.cluster.kubeconfig), "COLUMNS": "200", "HOME": str(BIN)}


def _shell(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (hack/setup.sh installs it from Debian)")
    return path


def complete(shell: str, line: str, cli: Cli) -> list[str]:
    """What `shell` offers at TAB after `line` (the words it would list or insert)."""
    env = _env(cli)
    if shell == "bash":
        words = line.split(" ")  # a trailing space leaves an empty word being completed
        script = ('source <(taskforge --show-completion bash)\n'
                  f'COMP_WORDS=({" ".join(repr(w) for w in words)}); '
                  f'COMP_CWORD={len(words) - 1}\n'
                  '_taskforge_completion taskforge\nprintf "%s\\n" "${COMPREPLY[@]}"\n')
        out = subprocess.run([_shell("bash"), "--norc", "-c", script], capture_output=True,
                             text=True, env=env, timeout=60, check=True).stdout
        return [w for w in out.splitlines() if w]
    if shell == "fish":
        script = f"taskforge --show-completion fish | source; complete -C {line!r}"
        out = subprocess.run([_shell("fish"), "--no-config", "-c", script],
                             capture_output=True, text=True, env=env, timeout=60,
                             check=True).stdout
        return [w.split("\t")[0] for w in out.splitlines() if w]
    out = subprocess.run([_shell("zsh"), "-f", "-c", ZSH_DRIVER, "zsh", line],
                         capture_output=True, text=True, env=env, timeout=90,
                         check=True).stdout
    # The listing zle drew at TAB, if any, then the line as TAB left it (the ^X widget)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08]", "", out).replace("\r", "\n")
    edited = re.findall(r"^LINE: (.*) :END$", screen, re.MULTILINE)
    assert edited, out
    assert "Traceback" not in screen and "error" not in screen.lower(), screen
    listing = screen.split(line, 1)[-1].split("LINE: ")[0]
    return [w for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9.-]*", listing + " " + edited[-1])
            if w not in line.split(" ")]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_run_and_workflow_names_complete_from_the_cluster(cli: Cli, shell: str) -> None:
    first, second = cli.new_run(), cli.new_run()
    ns = cli.namespace
    offered = complete(shell, f"taskforge get -n {ns} pipeline-", cli)
    assert first in offered and second in offered, (shell, offered)
    if shell != "fish":  # one match: the shell inserts it (fish's complete -C only lists)
        only = complete(shell, f"taskforge logs -n {ns} {first[:-1]}", cli)
        assert first in only and second not in only, (shell, only)
    if shell == "bash":  # a workflow name, for `run` (the same callback path in every shell)
        assert "pipeline" in complete(shell, f"taskforge run -n {ns} pipe", cli)
    # where nothing matches (and where the cluster refuses), nothing, and no error text
    none = complete(shell, f"taskforge get -n {ns}-none {first}", cli)
    assert not [w for w in none if w.startswith("pipeline-")], (shell, none)
