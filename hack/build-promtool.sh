#!/usr/bin/env bash
# Builds promtool (github.com/prometheus/prometheus/cmd/promtool) from its Go module, into the
# same cache as the other binaries, keyed by version; tests/unit/test_alerts.py runs
# `promtool check rules` and `promtool test rules` on the chart's alerts with it.
# PROMETHEUS_MODULE_VERSION is the Go module's version of a Prometheus 3 release (v3.X.Y is
# tagged v0.30X.Y for Go). The module is large (every service discovery: AWS, Azure, GCP,
# Kubernetes...): see bench/RESULTS.md for its cold build time. Prints the binary's path last.
set -euo pipefail
VERSION=${PROMETHEUS_MODULE_VERSION:-v0.316.0}
CACHE=${TASKFORGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskforge}
BIN="$CACHE/bin/promtool-$VERSION"
if [ ! -x "$BIN" ]; then
  mkdir -p "$(dirname "$BIN")"
  gobin=$(mktemp -d)
  trap 'rm -rf "$gobin"' EXIT
  t0=$(date +%s)
  (cd "$gobin" && GOFLAGS= GOBIN="$gobin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
    "github.com/prometheus/prometheus/cmd/promtool@$VERSION")
  mv "$gobin/promtool" "$BIN"
  printf '[build-promtool %s] built in %ss\n' "$(date +%H:%M:%S)" "$(( $(date +%s) - t0 ))" >&2
fi
echo "$BIN"
