#!/usr/bin/env bash
# Provides promtool, cached like the other binaries; tests/e2e/test_chart_observability.py runs
# `promtool check rules` and `promtool test rules` on the chart's alerts with it.
#
# It comes from Debian's `prometheus` package (downloaded with apt, unpacked, never installed:
# no service starts), not from the Go module: github.com/prometheus/prometheus/cmd/promtool
# pulls in every service discovery (AWS, Azure, GCP, Kubernetes...) and took 2,960 s to build
# cold here (bench/RESULTS.md), most of CI's budget. Debian builds the same tool from the same
# sources. PROMTOOL_FROM=go builds it from the Go module instead (PROMETHEUS_MODULE_VERSION).
# Prints the binary's path last.
set -euo pipefail
CACHE=${TASKFORGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskforge}
if [ "${PROMTOOL_FROM:-debian}" = go ]; then
  VERSION=${PROMETHEUS_MODULE_VERSION:-v0.316.0}
  BIN="$CACHE/bin/promtool-$VERSION"
  if [ ! -x "$BIN" ]; then
    mkdir -p "$(dirname "$BIN")"
    gobin=$(mktemp -d)
    trap 'rm -rf "$gobin"' EXIT
    (cd "$gobin" && GOFLAGS= GOBIN="$gobin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
      "github.com/prometheus/prometheus/cmd/promtool@$VERSION")
    mv "$gobin/promtool" "$BIN"
  fi
  echo "$BIN"
  exit 0
fi
candidate() { apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}'; }
VERSION=$(candidate)
if [ -z "$VERSION" ] || [ "$VERSION" = "(none)" ]; then  # a fresh machine may have no lists
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  VERSION=$(candidate)
fi
[ -n "$VERSION" ] && [ "$VERSION" != "(none)" ] || { echo "apt offers no prometheus package" >&2; exit 1; }
BIN="$CACHE/bin/promtool-debian-${VERSION//[^A-Za-z0-9.+-]/_}"
if [ ! -x "$BIN" ]; then
  mkdir -p "$(dirname "$BIN")"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  chmod 777 "$work"  # apt's _apt user writes the download there
  (cd "$work" && apt-get download -q "prometheus=$VERSION" >/dev/null 2>&1 \
    || apt-get download -q "prometheus=$VERSION")
  dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
  install -m 0755 "$work/x/usr/bin/promtool" "$BIN"
fi
echo "$BIN"
