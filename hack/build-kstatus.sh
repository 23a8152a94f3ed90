#!/usr/bin/env bash
# Builds hack/kstatus (kstatus.Compute of sigs.k8s.io/cli-utils, the health verdict Flux, kpt
# and Argo CD's kstatus checks use) from its Go module, into the same cache as the other
# binaries, keyed by the go.sum's hash so a new cli-utils version rebuilds it. Small: one
# package of cli-utils plus apimachinery, about 20 s cold. Prints the binary's path last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${TASKFORGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskforge}
key=$(cat "$here/kstatus/go.mod" "$here/kstatus/go.sum" "$here/kstatus/main.go" \
      | sha256sum | cut -c1-12)
BIN="$CACHE/bin/kstatus-$key"
if [ ! -x "$BIN" ]; then
  mkdir -p "$(dirname "$BIN")"
  t0=$(date +%s)
  (cd "$here/kstatus" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" \
    -o "$BIN.tmp" .)
  mv "$BIN.tmp" "$BIN"
  printf '[build-kstatus %s] built in %ss\n' "$(date +%H:%M:%S)" "$(( $(date +%s) - t0 ))" >&2
fi
echo "$BIN"
