#!/usr/bin/env bash
# Copies the generated CRDs (crds/*.yaml) into the Helm chart (charts/taskforge/crds/),
# removing chart CRDs that no longer exist. Run it after `make crds`;
# tests/unit/test_chart_crds.py fails while the two folders differ.
#
# Copies, not symlinks: `helm package` and some GitOps tools do not follow symlinks
# out of the chart directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/crds"
dst="$root/charts/taskforge/crds"
mkdir -p "$dst"

shopt -s nullglob
sources=("$src"/*.yaml)
if [ ${#sources[@]} -eq 0 ]; then
  echo "sync-chart-crds: no CRDs in $src (run: make crds)" >&2
  exit 1
fi

for f in "$dst"/*.yaml; do
  [ -e "$src/$(basename "$f")" ] || { rm -f "$f"; echo "removed $(basename "$f")"; }
done
for f in "${sources[@]}"; do
  name=$(basename "$f")
  if ! cmp -s "$f" "$dst/$name"; then
    cp "$f" "$dst/$name"
    echo "copied $name"
  fi
done
