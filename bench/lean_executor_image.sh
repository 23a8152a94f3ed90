#!/usr/bin/env bash
# An experiment for bench/bench_step_startup.py: a lean executor image, the `make image` base
# plus only what `python -m taskforge_executor` imports (the project, pydantic and httpx with
# their dependencies), copied out of localhost/taskforge:dev's venv. Exported as an OCI
# archive into the image cache; its path is printed last (pass it as --archive).
# DESIGN.md asks for such an image only if it makes steps measurably faster to start.
set -euo pipefail
CACHE=${TASKFORGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskforge}
out="$CACHE/images/lean-executor.tar"
B=(buildah --storage-driver vfs)
BASE=localhost/taskforge-base/python:3.11-bookworm
FULL=localhost/taskforge:dev
LEAN=localhost/taskforge-executor-lean:dev
KEEP='taskforge taskforge_executor taskforge-* __editable__* pydantic pydantic-* pydantic_core
pydantic_core-* annotated_types annotated_types-* typing_extensions.py typing_extensions-*
typing_inspection typing_inspection-* httpx httpx-* httpcore httpcore-* h11 h11-* anyio
anyio-* sniffio sniffio-* certifi certifi-* idna idna-*'
full=$("${B[@]}" from "$FULL")
lean=$("${B[@]}" from "$BASE")
src=$("${B[@]}" mount "$full")
dst=$("${B[@]}" mount "$lean")
sp=opt/venv/lib/python3.11/site-packages
mkdir -p "$dst/$sp"
cp -a "$src/opt/venv/bin" "$src/opt/venv/pyvenv.cfg" "$dst/opt/venv/"
ln -sfn lib "$dst/opt/venv/lib64" 2>/dev/null || true
cd "$src/$sp"
for pattern in $KEEP; do
  for f in $pattern; do [ -e "$f" ] && cp -a "$f" "$dst/$sp/"; done
done
cp -a "$src/etc/passwd" "$src/etc/group" "$dst/etc/"
"${B[@]}" umount "$full" "$lean" >/dev/null
"${B[@]}" config --user 65532:65532 --workingdir /tmp --cmd taskforge-executor \
  --env PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONUNBUFFERED=1 --env HOME=/tmp --env TMPDIR=/tmp \
  "$lean"
"${B[@]}" commit -q --rm "$lean" "$LEAN" >/dev/null
"${B[@]}" rm "$full" >/dev/null
rm -f "$out"
"${B[@]}" push -q "$LEAN" "oci-archive:$out:$LEAN" >/dev/null
printf '%-45s %s\n' "$LEAN" "$("${B[@]}" images --format '{{.Size}}' "$LEAN" | head -1)"
printf '%-45s %s\n' "$FULL" "$("${B[@]}" images --format '{{.Size}}' "$FULL" | head -1)"
echo "$out"
