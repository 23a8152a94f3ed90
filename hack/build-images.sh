#!/usr/bin/env bash
# `make image`: builds Taskforge's image from the unchanged Dockerfile with buildah, on base
# images built here from Debian's packages (no registry can be reached), and loads them into
# the real node's containerd when one runs (NODE=kubelet). Prints each image's size.
#
#   base    debootstrap bookworm (minbase) + python3.11, venv, pip: the Dockerfile's
#           PYTHON_IMAGE, also tagged python:3.11-slim for the examples' container steps
#   busybox busybox-static alone, tagged busybox:1.36 and busybox (examples, tests)
#   pause   the same busybox sleeping: the pod sandbox image, pinned in containerd
#   taskforge:dev  `buildah bud --isolation chroot` of ./Dockerfile on the base above
#
# The debootstrap root is cached (keyed by suite and package list); buildah's vfs store
# keeps the layers, so a rebuild after a source edit only redoes the Dockerfile's last steps.
# Usage: hack/build-images.sh [--import CONTAINERD_SOCKET] [--skip-app] [--rootfs-only]
# (--rootfs-only: just the cached debootstrap tarball; setup.sh runs it beside the Go builds,
# since it waits on the network while they keep both cores busy.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${TASKFORGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskforge}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
BASE_IMAGE=localhost/taskforge-base/python:3.11-$SUITE
APP_IMAGE=${TASKFORGE_IMAGE:-localhost/taskforge:dev}
BUSYBOX_IMAGE=docker.io/library/busybox:1.36
PAUSE_IMAGE=localhost/taskforge-pause:busybox
PYTHON_STANDIN=docker.io/library/python:3.11-slim
BUILDAH=(buildah --storage-driver vfs)

log() { printf '[build-images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
has() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }

import_to=""
skip_app=0
rootfs_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --rootfs-only) rootfs_only=1; shift ;;
    --import) import_to=$2; shift 2 ;;
    --skip-app) skip_app=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

# --- base: debootstrap, cached as a tarball --------------------------------------------
key=$(printf '%s %s' "$SUITE" "$PACKAGES" | sha256sum | cut -c1-12)
rootfs="$CACHE/images/rootfs-$SUITE-$key.tar"
if [ ! -f "$rootfs" ]; then
  t0=$(date +%s)
  log "debootstrap $SUITE with $PACKAGES (cached in $rootfs)"
  mkdir -p "$CACHE/images"
  tmp=$(mktemp -d "$CACHE/images/debootstrap.XXXXXX")
  # debootstrap mounts proc and sys inside the target: unmount before anything is removed.
  cleanup_tmp() {
    findmnt -rno TARGET | grep -F "$tmp/" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf --one-file-system "$tmp"
  }
  trap cleanup_tmp EXIT
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp/root" "$MIRROR" \
    > "$tmp/debootstrap.log" 2>&1 || { tail -20 "$tmp/debootstrap.log" >&2; exit 1; }
  # What the official python image leaves out: package lists, docs, locales; and Debian's
  # PEP 668 marker, which the official image does not have (the Dockerfile pip-installs).
  rm -rf "$tmp/root"/var/lib/apt/lists/* "$tmp/root"/var/cache/apt/* \
    "$tmp/root"/usr/share/doc "$tmp/root"/usr/share/man "$tmp/root"/usr/share/locale \
    "$tmp/root"/usr/share/info "$tmp/root"/var/log/*.log
  rm -f "$tmp/root"/usr/lib/python3*/EXTERNALLY-MANAGED
  tar --numeric-owner --one-file-system -C "$tmp/root" -cf "$rootfs.tmp" .
  mv "$rootfs.tmp" "$rootfs"
  cleanup_tmp
  trap - EXIT
  log "debootstrap done in $(( $(date +%s) - t0 ))s"
fi

[ $rootfs_only = 1 ] && exit 0

if ! has "$BASE_IMAGE" || [ "$rootfs" -nt "$CACHE/images/.base-$key" ]; then
  c=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add "$c" "$rootfs" /
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$c"
  "${BUILDAH[@]}" commit -q --rm "$c" "$BASE_IMAGE" >/dev/null
  "${BUILDAH[@]}" tag "$BASE_IMAGE" "$PYTHON_STANDIN"
  touch "$CACHE/images/.base-$key"
  log "built $BASE_IMAGE (also $PYTHON_STANDIN)"
fi

# --- busybox and pause: Debian's static busybox, nothing else ---------------------------
if ! has "$BUSYBOX_IMAGE" || ! has "$PAUSE_IMAGE"; then
  bb=$(command -v busybox)
  c=$("${BUILDAH[@]}" from scratch)
  m=$("${BUILDAH[@]}" mount "$c")
  mkdir -p "$m/bin" "$m/tmp" "$m/etc"
  cp "$bb" "$m/bin/busybox"
  for a in $("$bb" --list); do [ -e "$m/bin/$a" ] || ln -s busybox "$m/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' \
    > "$m/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' > "$m/etc/group"
  chmod 1777 "$m/tmp"
  "${BUILDAH[@]}" umount "$c" >/dev/null
  # The sandbox only has to hold the pod's namespaces; it is killed when the pod goes.
  "${BUILDAH[@]}" config --env PATH=/bin --entrypoint '["/bin/sleep","infinity"]' "$c"
  "${BUILDAH[@]}" commit -q "$c" "$PAUSE_IMAGE" >/dev/null
  "${BUILDAH[@]}" config --entrypoint '[]' --cmd sh "$c"
  "${BUILDAH[@]}" commit -q --rm "$c" "$BUSYBOX_IMAGE" >/dev/null
  "${BUILDAH[@]}" tag "$BUSYBOX_IMAGE" docker.io/library/busybox:latest
  log "built $BUSYBOX_IMAGE and $PAUSE_IMAGE"
fi

# --- the project's image: the Dockerfile as it is ---------------------------------------
images=("$PAUSE_IMAGE" "$BUSYBOX_IMAGE" docker.io/library/busybox:latest "$PYTHON_STANDIN")
if [ $skip_app = 0 ]; then
  t0=$(date +%s)
  log "buildah bud $APP_IMAGE from $root/Dockerfile"
  # The RUN steps pip-install from the package index through this machine's TLS trust (its
  # CA bundle, which may hold a local proxy's CA): mounted for the build, never baked in.
  "${BUILDAH[@]}" bud --isolation chroot --layers -q \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    --build-arg PYTHON_IMAGE="$BASE_IMAGE" \
    --build-arg REVISION="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    -t "$APP_IMAGE" -f "$root/Dockerfile" "$root" >/dev/null
  log "built $APP_IMAGE in $(( $(date +%s) - t0 ))s"
  images+=("$APP_IMAGE")
fi

for i in "${images[@]}"; do
  printf '%-45s %s\n' "$i" "$("${BUILDAH[@]}" images --format '{{.Size}}' "$i" | head -1)"
done

# --- export OCI archives for the node (imported at every real-node start) --------------
# One archive per image, rewritten only when the image changed (its ID is kept beside it);
# `aliases` lists the other names each one also answers to (ctr images tag).
OCI="$CACHE/images/oci"
mkdir -p "$OCI"
archive_of() { case $1 in
  "$PAUSE_IMAGE") echo pause ;; "$BUSYBOX_IMAGE") echo busybox ;;
  "$PYTHON_STANDIN") echo python ;; "$APP_IMAGE") echo taskforge ;; esac; }
for i in "$PAUSE_IMAGE" "$BUSYBOX_IMAGE" "$PYTHON_STANDIN" "$APP_IMAGE"; do
  has "$i" || continue
  name=$(archive_of "$i")
  id=$("${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$i")
  if [ "$(cat "$OCI/$name.id" 2>/dev/null)" != "$id" ] || [ ! -f "$OCI/$name.tar" ]; then
    rm -f "$OCI/$name.tar"
    "${BUILDAH[@]}" push -q "$i" "oci-archive:$OCI/$name.tar.tmp:$i" >/dev/null
    mv "$OCI/$name.tar.tmp" "$OCI/$name.tar"
    echo "$id" > "$OCI/$name.id"
  fi
done
{
  echo "$BUSYBOX_IMAGE docker.io/library/busybox:latest"
  # `make run`'s default executor image (TASKFORGE_EXECUTOR_IMAGE) is this same image
  echo "$APP_IMAGE docker.io/library/taskforge-executor:dev"
} > "$OCI/aliases"

# --- load into a running node's containerd ---------------------------------------------
if [ -n "$import_to" ]; then
  ctr=${CTR:-ctr}
  for a in "$OCI"/*.tar; do
    "$ctr" --address "$import_to" -n k8s.io images import "$a" >/dev/null
  done
  while read -r src dst; do
    "$ctr" --address "$import_to" -n k8s.io images tag --force "$src" "$dst" >/dev/null || true
  done < "$OCI/aliases"
  log "imported $(ls "$OCI"/*.tar | wc -l) images into $import_to"
fi
