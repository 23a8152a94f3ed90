#!/usr/bin/env bash
# Installs everything Taskforge's tests and demo need on a fresh Debian machine:
# apt packages (redis-server; for the real node and `make image`: buildah, debootstrap,
# the CNI plugins, busybox-static, iptables, and libseccomp-dev for runc; zsh and fish for
# the completion tests; chromium and chromium-driver for the browser tests), a Python venv
# with the project and its dev tools, and the control-plane and node binaries built from
# Go modules (cached, see build-bins.sh and build-node-bins.sh).
# Idempotent and quick when everything is already there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# package -> a file it installs (checked instead of asking dpkg, which is slower)
declare -A APT=(
  [redis-server]=/usr/bin/redis-server [buildah]=/usr/bin/buildah
  [debootstrap]=/usr/sbin/debootstrap [containernetworking-plugins]=/usr/lib/cni/bridge
  [busybox-static]=/bin/busybox [iptables]=/usr/sbin/iptables [conntrack]=/usr/sbin/conntrack
  [libseccomp-dev]=/usr/include/seccomp.h [pkg-config]=/usr/bin/pkg-config
  [iproute2]=/usr/sbin/ip
  [zsh]=/usr/bin/zsh [fish]=/usr/bin/fish  # tests/e2e/test_cli_completion.py tries both
  # tests/e2e/browser (Selenium) and hack/ui_screenshots.py: Debian's browser and its driver,
  # so nothing downloads a browser
  [chromium]=/usr/bin/chromium [chromium-driver]=/usr/bin/chromedriver
  [postgresql]=/usr/lib/postgresql/15/bin/postgres  # the run archive's tests (issue 18)
)
missing=()
for pkg in "${!APT[@]}"; do [ -e "${APT[$pkg]}" ] || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing from Debian: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian's package starts a system-wide server; the project runs its own on free ports.
  $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
  $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true  # ours: postgres_server.py
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp=.venv/.taskforge-installed
if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt "$stamp" ]; then
  log "creating the Python venv in .venv"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
# localcluster is a dev tool, not in the wheel: the venvs find it on a path file.
hack_pth() { echo "$root/hack" > "$("$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/taskforge-hack.pth"; }
hack_pth .venv/bin/python

# Every other Python that pyproject declares gets a venv of its own; `make pythons` runs the
# unit, engine and executor suites on each. pyenv's interpreters are found by path, as its
# shims answer only for the selected version.
for v in 3.12 3.13; do
  venv=.venv-py$v
  interp=""
  if "python$v" -c pass >/dev/null 2>&1; then interp=$(command -v "python$v"); fi
  [ -n "$interp" ] || interp=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/$v.*/bin/python$v \
    2>/dev/null | sort -V | tail -n 1)
  if [ -z "$interp" ]; then log "no python$v here: skipped"; continue; fi
  if [ ! -x $venv/bin/python ] || [ pyproject.toml -nt $venv/.installed ]; then
    log "creating $venv with $interp"
    [ -x $venv/bin/python ] || "$interp" -m venv $venv
    $venv/bin/pip install -q -e '.[dev]'
    touch $venv/.installed
  fi
  hack_pth $venv/bin/python
done

# The base image's debootstrap (network-bound, cached) runs beside the Go builds (CPU-bound).
mkdir -p .local
hack/build-images.sh --rootfs-only > .local/rootfs.log 2>&1 &
rootfs_pid=$!
bin=$(hack/build-bins.sh | tail -n 1)
node_bin=$(hack/build-node-bins.sh | tail -n 1)
# kstatus (sigs.k8s.io/cli-utils) for tests/gitops: one small package, about a minute cold.
hack/build-kstatus.sh > /dev/null
# promtool for the chart's alert tests: Debian's build, unpacked into the cache (hack/build-promtool.sh).
hack/build-promtool.sh > /dev/null
if ! wait "$rootfs_pid"; then
  cat .local/rootfs.log >&2
  log "debootstrap of the base image failed (see above)"
  exit 1
fi
mkdir -p .local
echo "$bin" > .local/bin-dir
echo "$node_bin" > .local/node-bin-dir
log "ready: venv .venv, binaries $bin and $node_bin"
