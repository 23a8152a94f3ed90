"""Wheel and install sizes of `taskforge` and `taskforge[operator]`, and the CLI's start-up
CPU in each, measured on a real wheel install (an editable install pays for setuptools'
import finder on every start, which users never do).

    .venv/bin/python bench/bench_cli_install.py [--src DIR] [--python PY]

Builds the wheel of --src (default: this checkout) into a temp dir, makes a venv for each
install, and prints a table: wheel size, site-packages size, distributions, and the median
CPU of `taskforge --version` / `--help` (bench_cli_startup.py's measure). Needs PyPI (or
pip's cache) for the dependencies.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", type=Path, default=HERE.parent)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tf-install-"))
    subprocess.run([args.python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp),
                    str(args.src)], check=True)
    wheel = next(tmp.glob("taskforge-*.whl"))
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 1024:.0f} KiB")
    print(f"{'install':<22}{'site-packages MiB':>18}{'dists':>7}  start-up (median CPU ms)")
    for extra in ("", "[operator]"):
        venv = tmp / f"venv{extra.strip('[]') or '-cli'}"
        subprocess.run([args.python, "-m", "venv", str(venv)], check=True)
        py = venv / "bin" / "python"
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"{wheel}{extra}"], check=True)
        purelib = Path(subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True).stdout.strip())
        # pip and setuptools come with every venv: not the project's cost
        own = _size(purelib) - sum(_size(p) for p in purelib.glob("pip*")) - sum(
            _size(p) for p in purelib.glob("setuptools*"))
        dists = len(list(purelib.glob("*.dist-info"))) - len(list(purelib.glob("pip-*.dist-info")))
        bench = subprocess.run([str(py), str(HERE / "bench_cli_startup.py"), "--runs",
                                str(args.runs)], capture_output=True, text=True, check=False)
        rows = [re.match(r"(taskforge\S*(?: \S+)*?)\s+(\d+)\s+\d+", ln)
                for ln in bench.stdout.splitlines()]
        startup = "; ".join(f"{m.group(1)} {m.group(2)}" for m in rows if m)
        print(f"{'taskforge' + extra:<22}{own / 2**20:>18.1f}{dists:>7}  {startup}")
    print(f"(python {sysconfig.get_python_version()}, venvs in {tmp})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
